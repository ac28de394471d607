//! The store's name index: every metric with a file, as a tree of path
//! components, filled by one scan of the directory at start and by every
//! file the writers create, so finding names never walks the disk.
//! Globs are Graphite's, per component: `*`, `?`, `[ab]`, `[a-z]`, `[!a]`,
//! `{a,b}` (whose members may hold globs).

use std::path::Path;
use std::sync::RwLock;

use hashbrown::HashTable;

/// No node (the end of a sibling list, or no child yet).
const NONE: u32 = u32::MAX;
/// The root's id.
const ROOT: u32 = 0;

/// One node of the tree, 20 bytes: its component (an interned string),
/// its parent, first child and next sibling, and whether a metric ends here.
#[derive(Debug, Clone, Copy)]
struct Node {
    component: u32,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    leaf: bool,
}

/// The tree, compact: component strings interned once in one arena,
/// nodes in one vector, and (parent, component) → child in a hash table
/// of node ids.
#[derive(Debug)]
struct Tree {
    text: String,
    /// (offset, length) of each interned component in `text`.
    components: Vec<(u32, u32)>,
    interned: HashTable<u32>,
    nodes: Vec<Node>,
    /// Child node ids, found by (parent, component).
    edges: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            text: String::new(),
            components: Vec::new(),
            interned: HashTable::new(),
            nodes: vec![Node {
                component: NONE,
                parent: NONE,
                first_child: NONE,
                next_sibling: NONE,
                leaf: false,
            }],
            edges: HashTable::new(),
            hasher: ahash::RandomState::with_seeds(7, 11, 13, 17),
        }
    }
}

fn component_of<'t>(text: &'t str, components: &[(u32, u32)], id: u32) -> &'t str {
    let (offset, len) = components[id as usize];
    &text[offset as usize..(offset + len) as usize]
}

impl Tree {
    fn component(&self, id: u32) -> &str {
        component_of(&self.text, &self.components, id)
    }

    fn lookup_component(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        self.interned
            .find(hash, |id| self.component(*id) == text)
            .copied()
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.lookup_component(text) {
            return id;
        }
        let id = self.components.len() as u32;
        self.components
            .push((self.text.len() as u32, text.len() as u32));
        self.text.push_str(text);
        let hash = self.hasher.hash_one(text);
        let (hasher, all, components) = (&self.hasher, &self.text, &self.components);
        self.interned.insert_unique(hash, id, |id| {
            hasher.hash_one(component_of(all, components, *id))
        });
        id
    }

    fn child(&self, parent: u32, component: u32) -> Option<u32> {
        let hash = self.hasher.hash_one((parent, component));
        self.edges
            .find(hash, |id| {
                let n = &self.nodes[*id as usize];
                n.component == component && n.parent == parent
            })
            .copied()
    }

    fn add_child(&mut self, parent: u32, component: u32) -> u32 {
        if let Some(id) = self.child(parent, component) {
            return id;
        }
        let id = self.nodes.len() as u32;
        let sibling = self.nodes[parent as usize].first_child;
        self.nodes.push(Node {
            component,
            parent,
            first_child: NONE,
            next_sibling: sibling,
            leaf: false,
        });
        self.nodes[parent as usize].first_child = id;
        let hash = self.hasher.hash_one((parent, component));
        let (hasher, nodes) = (&self.hasher, &self.nodes);
        self.edges.insert_unique(hash, id, |id| {
            let n = &nodes[*id as usize];
            hasher.hash_one((n.parent, n.component))
        });
        id
    }

    fn children(&self, parent: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.nodes[parent as usize].first_child;
        std::iter::from_fn(move || {
            let id = next;
            if id == NONE {
                return None;
            }
            next = self.nodes[id as usize].next_sibling;
            Some(id)
        })
    }

    /// The dotted path of `id`.
    fn path(&self, mut id: u32) -> String {
        let mut parts = Vec::new();
        while id != ROOT && id != NONE {
            let n = &self.nodes[id as usize];
            parts.push(self.component(n.component));
            id = n.parent;
        }
        parts.reverse();
        parts.join(".")
    }
}

/// The index, shared by the writers (insert) and the read API (find).
#[derive(Debug, Default)]
pub struct NameIndex {
    tree: RwLock<Tree>,
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
        let Ok(mut tree) = self.tree.write() else {
            return;
        };
        let mut node = ROOT;
        for part in name.split('.').filter(|p| !p.is_empty()) {
            let component = tree.intern(part);
            node = tree.add_child(node, component);
        }
        if node != ROOT {
            tree.nodes[node as usize].leaf = true;
        }
    }

    /// Whether `name` is a metric.
    pub fn contains(&self, name: &str) -> bool {
        let Ok(tree) = self.tree.read() else {
            return false;
        };
        let mut node = ROOT;
        for part in name.split('.').filter(|p| !p.is_empty()) {
            let Some(component) = tree.lookup_component(part) else {
                return false;
            };
            match tree.child(node, component) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node != ROOT && tree.nodes[node as usize].leaf
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

    /// Every node matching `pattern`, in path order (a branch before a
    /// leaf of the same path); at most `limit`.
    pub fn find(&self, pattern: &str, limit: usize) -> Vec<Found> {
        let Ok(tree) = self.tree.read() else {
            return Vec::new();
        };
        let globs: Vec<Glob> = split_components(pattern)
            .iter()
            .map(|c| Glob::new(c))
            .collect();
        let mut hits = Vec::new();
        walk(&tree, ROOT, &globs, &mut hits, limit);
        let mut out: Vec<Found> = Vec::with_capacity(hits.len());
        for (id, leaf) in hits {
            out.push(Found {
                path: tree.path(id),
                leaf,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.leaf.cmp(&b.leaf)));
        out
    }

    /// Every metric, in path order.
    pub fn all_metrics(&self) -> Vec<String> {
        let Ok(tree) = self.tree.read() else {
            return Vec::new();
        };
        let mut out: Vec<String> = (1..tree.nodes.len() as u32)
            .filter(|id| tree.nodes[*id as usize].leaf)
            .map(|id| tree.path(id))
            .collect();
        out.sort();
        out
    }
}

/// Collects (node, is_leaf) for every match of `globs` below `node`.
fn walk(tree: &Tree, node: u32, globs: &[Glob], out: &mut Vec<(u32, bool)>, limit: usize) {
    let Some((glob, rest)) = globs.split_first() else {
        return;
    };
    let visit = |child: u32, out: &mut Vec<(u32, bool)>| {
        let n = tree.nodes[child as usize];
        if rest.is_empty() {
            if n.first_child != NONE && out.len() < limit {
                out.push((child, false));
            }
            if n.leaf && out.len() < limit {
                out.push((child, true));
            }
        } else {
            walk(tree, child, rest, out, limit);
        }
    };
    match glob {
        Glob::Literal(name) => {
            if let Some(child) = tree
                .lookup_component(name)
                .and_then(|c| tree.child(node, c))
            {
                visit(child, out);
            }
        }
        Glob::Wildcard(pattern) => {
            for child in tree.children(node) {
                if out.len() >= limit {
                    return;
                }
                if wildcard_match(
                    pattern,
                    tree.component(tree.nodes[child as usize].component),
                ) {
                    visit(child, out);
                }
            }
        }
        Glob::Pattern(re) => {
            for child in tree.children(node) {
                if out.len() >= limit {
                    return;
                }
                if re.is_match(tree.component(tree.nodes[child as usize].component)) {
                    visit(child, out);
                }
            }
        }
    }
}

/// `*` (any run) and `?` (one character) against `text`, the other
/// characters literal: the usual two-cursor match, backtracking only to
/// the last `*`, so at most pattern x text steps (patterns with few stars
/// only; see [`MAX_WILDCARD_STARS`]).
fn wildcard_match(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Stars a component may hold to be matched by [`wildcard_match`]; more go
/// to a compiled regex, linear whatever the pattern.
const MAX_WILDCARD_STARS: usize = 4;

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
    /// Only `*` and `?`: matched without compiling anything (most
    /// queries: `*`, `s00*`, `*.count`).
    Wildcard(Vec<char>),
    Pattern(regex_automata::meta::Regex),
}

impl Glob {
    fn new(component: &str) -> Glob {
        if !has_glob(component) {
            return Glob::Literal(component.to_string());
        }
        if !component.contains(['[', '{']) && component.matches('*').count() <= MAX_WILDCARD_STARS {
            return Glob::Wildcard(component.chars().collect());
        }
        let mut re = String::from("^(?:");
        glob_to_regex(component, &mut re);
        re.push_str(")$");
        let compiled = regex_automata::meta::Regex::builder()
            .configure(regex_automata::meta::Config::new().dfa(false))
            .build(&re);
        match compiled {
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

    #[test]
    fn wildcards_match_as_the_regex_of_the_same_glob() {
        // Every pattern over {a, b, *, ?} up to 4 long against every text
        // over {a, b, é} up to 5 long.
        fn words(alphabet: &[char], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let texts = words(&['a', 'b', 'é'], 5);
        for pattern in words(&['a', 'b', '*', '?'], 4) {
            let mut re = String::from("^(?:");
            glob_to_regex(&pattern, &mut re);
            re.push_str(")$");
            let re = regex::Regex::new(&re).unwrap();
            let chars: Vec<char> = pattern.chars().collect();
            for text in &texts {
                assert_eq!(
                    wildcard_match(&chars, text),
                    re.is_match(text),
                    "{pattern:?} on {text:?}"
                );
            }
        }
    }

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
