//! The store's name index: every metric with a file, as a tree of path
//! components, filled by one scan of the directory at start and by every
//! file the writers create, so finding names never walks the disk.
//! Globs are Graphite's, per component: `*`, `?`, `[ab]`, `[a-z]`, `[!a]`,
//! `{a,b}` (whose members may hold globs).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

/// One node of the tree.
#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, Node>,
    /// A metric ends here (a file exists).
    leaf: bool,
}

/// The index, shared by the writers (insert) and the read API (find).
#[derive(Debug, Default)]
pub struct NameIndex {
    root: RwLock<Node>,
}

/// A match: the path and whether it is a metric (a leaf) or a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The full dotted path.
    pub path: String,
    /// A metric (true) or a branch with children (false). A name that is
    /// both appears twice, once as each.
    pub leaf: bool,
}

impl NameIndex {
    /// Adds a metric.
    pub fn insert(&self, name: &str) {
        let Ok(mut root) = self.root.write() else {
            return;
        };
        let mut node = &mut *root;
        for part in name.split('.').filter(|p| !p.is_empty()) {
            node = node.children.entry(part.into()).or_default();
        }
        node.leaf = true;
    }

    /// Whether `name` is a metric.
    pub fn contains(&self, name: &str) -> bool {
        let Ok(root) = self.root.read() else {
            return false;
        };
        let mut node = &*root;
        for part in name.split('.').filter(|p| !p.is_empty()) {
            match node.children.get(part) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.leaf
    }

    /// Adds every `.wsp` file under `root` (tagged series under `_tagged/`
    /// are left to the tag index); returns how many.
    pub fn scan(&self, root: &Path) -> usize {
        let mut count = 0;
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str() else {
                    continue;
                };
                if name.starts_with('.') || (prefix.is_empty() && name == "_tagged") {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push((entry.path(), format!("{prefix}{name}.")));
                } else if let Some(metric) = name.strip_suffix(".wsp") {
                    self.insert(&format!("{prefix}{metric}"));
                    count += 1;
                }
            }
        }
        count
    }

    /// Every node matching `pattern`, in path order; at most `limit`.
    pub fn find(&self, pattern: &str, limit: usize) -> Vec<Found> {
        let Ok(root) = self.root.read() else {
            return Vec::new();
        };
        let globs: Vec<Glob> = split_components(pattern)
            .iter()
            .map(|c| Glob::new(c))
            .collect();
        let mut out = Vec::new();
        walk(&root, &globs, &mut String::new(), &mut out, limit);
        out
    }

    /// Every metric, in path order.
    pub fn all_metrics(&self) -> Vec<String> {
        let Ok(root) = self.root.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        collect(&root, &mut String::new(), &mut out);
        out
    }
}

fn collect(node: &Node, prefix: &mut String, out: &mut Vec<String>) {
    for (name, child) in &node.children {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(name);
        if child.leaf {
            out.push(prefix.clone());
        }
        collect(child, prefix, out);
        prefix.truncate(len);
    }
}

fn walk(node: &Node, globs: &[Glob], prefix: &mut String, out: &mut Vec<Found>, limit: usize) {
    let Some((glob, rest)) = globs.split_first() else {
        return;
    };
    let mut visit = |name: &str, child: &Node, out: &mut Vec<Found>| {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(name);
        if rest.is_empty() {
            if !child.children.is_empty() && out.len() < limit {
                out.push(Found {
                    path: prefix.clone(),
                    leaf: false,
                });
            }
            if child.leaf && out.len() < limit {
                out.push(Found {
                    path: prefix.clone(),
                    leaf: true,
                });
            }
        } else {
            walk(child, rest, prefix, out, limit);
        }
        prefix.truncate(len);
    };
    match glob {
        Glob::Literal(name) => {
            if let Some(child) = node.children.get(name.as_str()) {
                visit(name, child, out);
            }
        }
        Glob::Pattern(re) => {
            for (name, child) in &node.children {
                if out.len() >= limit {
                    return;
                }
                if re.is_match(name) {
                    visit(name, child, out);
                }
            }
        }
    }
}

/// Splits a path expression at the dots that are not inside `{...}` or
/// `[...]`.
pub fn split_components(pattern: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut braces, mut brackets) = (0usize, false);
    for c in pattern.chars() {
        match c {
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets = true,
            ']' => brackets = false,
            '.' if braces == 0 && !brackets => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// Whether a path expression holds glob syntax.
pub fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// One component of a path expression.
enum Glob {
    Literal(String),
    Pattern(regex::Regex),
}

impl Glob {
    fn new(component: &str) -> Glob {
        if !has_glob(component) {
            return Glob::Literal(component.to_string());
        }
        let mut re = String::from("^(?:");
        glob_to_regex(component, &mut re);
        re.push_str(")$");
        match regex::Regex::new(&re) {
            Ok(r) => Glob::Pattern(r),
            // A malformed glob matches only itself.
            Err(_) => Glob::Literal(component.to_string()),
        }
    }
}

fn glob_to_regex(glob: &str, out: &mut String) {
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str("[^.]*"),
            '?' => out.push_str("[^.]"),
            '[' => match chars[i..].iter().position(|c| *c == ']') {
                Some(len) if len > 1 => {
                    let class: String = chars[i + 1..i + len].iter().collect();
                    out.push('[');
                    if let Some(negated) = class.strip_prefix('!') {
                        out.push('^');
                        out.push_str(&regex_class(negated));
                    } else {
                        out.push_str(&regex_class(&class));
                    }
                    out.push(']');
                    i += len;
                }
                _ => out.push_str("\\["),
            },
            '{' => {
                let mut depth = 0;
                let mut end = None;
                for (j, c) in chars.iter().enumerate().skip(i) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                match end {
                    Some(end) => {
                        let inner: String = chars[i + 1..end].iter().collect();
                        out.push_str("(?:");
                        for (n, alt) in split_alternatives(&inner).iter().enumerate() {
                            if n > 0 {
                                out.push('|');
                            }
                            glob_to_regex(alt, out);
                        }
                        out.push(')');
                        i = end;
                    }
                    None => out.push_str("\\{"),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
}

fn regex_class(class: &str) -> String {
    class
        .chars()
        .map(|c| match c {
            '\\' | ']' | '[' | '^' => format!("\\{c}"),
            c => c.to_string(),
        })
        .collect()
}

fn split_alternatives(inner: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> NameIndex {
        let i = NameIndex::default();
        for n in [
            "stats.gauges.x",
            "stats.gauges.empty",
            "stats.timers.api.get.mean",
            "stats.timers.api.put.mean",
            "stats_counts.app.a.requests",
            "stats_counts.app.b.requests",
            "stats_counts.app.c.requests",
        ] {
            i.insert(n);
        }
        i
    }

    fn paths(found: Vec<Found>) -> Vec<String> {
        found.into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn globs_per_component() {
        let i = index();
        assert_eq!(
            paths(i.find("stats.*", 100)),
            ["stats.gauges", "stats.timers"]
        );
        assert_eq!(paths(i.find("stats_counts.app.?.requests", 100)).len(), 3);
        assert_eq!(
            paths(i.find("stats_counts.app.[ab].requests", 100)).len(),
            2
        );
        assert_eq!(
            paths(i.find("stats_counts.app.[!a].requests", 100)).len(),
            2
        );
        assert_eq!(
            paths(i.find("stats_counts.app.[a-b].requests", 100)).len(),
            2
        );
        assert_eq!(
            paths(i.find("stats.gauges.{x,nope}", 100)),
            ["stats.gauges.x"]
        );
        assert_eq!(
            paths(i.find("stats.{gauges,timers}.*", 100)),
            ["stats.gauges.empty", "stats.gauges.x", "stats.timers.api"]
        );
        assert_eq!(paths(i.find("stats.timers.*.{g*,p?t}.mean", 100)).len(), 2);
        assert!(i.find("nosuch.*", 100).is_empty());
        assert_eq!(
            i.find("stats.gauges.x", 100),
            vec![Found {
                path: "stats.gauges.x".into(),
                leaf: true
            }]
        );
        assert!(i.contains("stats.gauges.x") && !i.contains("stats.gauges"));
        assert_eq!(i.all_metrics().len(), 7);
    }

    #[test]
    fn scan_finds_files_and_skips_tagged() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a/b/c.wsp",
            "a/d.wsp",
            "_tagged/abc/def/x.wsp",
            "a/.sluice-1.wsp.tmp",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let i = NameIndex::default();
        assert_eq!(i.scan(dir.path()), 2);
        assert_eq!(i.all_metrics(), ["a.b.c", "a.d"]);
    }
}
