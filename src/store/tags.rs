//! The tag index: every tagged series the store holds (Graphite 1.1
//! `name;k=v;...` names), by tag and value, answering graphite-web's TagDB
//! questions (find series by tag expressions, list tags and values).
//! Tagged files are named by a hash, so the names cannot be read back from
//! the disk: the index keeps them in `_tagged/series.txt`, one normalised
//! name per line, appended as series appear and read at start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::RwLock;

use regex::Regex;

use super::line_file::LineFile;

/// Where the names live, under the store's root.
pub const SERIES_FILE: &str = "_tagged/series.txt";

/// Compiled size a tag expression's regex may reach (a request sizes it).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A tagged series parsed as carbon parses it: the metric and its tags,
/// `name` among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// Tags in the order they were given, `name` (the metric without a
    /// leading `~`) last.
    pub tags: Vec<(String, String)>,
}

impl Tagged {
    /// Parses `metric;k=v;...` with carbon's rules (non-empty tag without
    /// `;!^=`, non-empty value without `;` not starting with `~`; the last
    /// of a repeated tag wins; a `name` tag is ignored).
    pub fn parse(path: &str) -> Result<Tagged, String> {
        let mut parts = path.split(';');
        let metric = parts.next().unwrap_or("");
        if metric.is_empty() {
            return Err(format!("Cannot parse path {path}, no metric found"));
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        for segment in parts {
            let Some((tag, value)) = segment.split_once('=') else {
                return Err(format!(
                    "Cannot parse path {path}, invalid segment {segment}"
                ));
            };
            if tag.is_empty() {
                return Err("Tag may not be empty".into());
            }
            if value.is_empty() {
                return Err(format!("Value for tag \"{tag}\" may not be empty"));
            }
            if let Some(c) = tag.chars().find(|c| matches!(c, '!' | '^' | '=')) {
                return Err(format!("Character \"{c}\" is not allowed in tag \"{tag}\""));
            }
            if value.starts_with('~') {
                return Err(format!(
                    "Tag values are not allowed to start with \"~\" in tag \"{tag}\""
                ));
            }
            if tag == "name" {
                continue;
            }
            // A repeated tag keeps its place and takes the last value.
            match tags.iter_mut().find(|(k, _)| k == tag) {
                Some(slot) => slot.1 = value.to_string(),
                None => tags.push((tag.to_string(), value.to_string())),
            }
        }
        let name = metric.trim_start_matches('~');
        if name.is_empty() {
            return Err(format!(
                "Cannot use metric name {metric} as tag value, results in emptry string"
            ));
        }
        tags.push(("name".into(), name.to_string()));
        Ok(Tagged { tags })
    }

    /// The value of `tag`, or "" (graphite-web's default for a missing tag).
    pub fn get(&self, tag: &str) -> &str {
        self.tags
            .iter()
            .find(|(k, _)| k == tag)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The normal form: the metric, then `;k=v` for each other tag sorted.
    pub fn path(&self) -> String {
        let mut rest: Vec<String> = self
            .tags
            .iter()
            .filter(|(k, _)| k != "name")
            .map(|(k, v)| format!(";{k}={v}"))
            .collect();
        rest.sort();
        format!("{}{}", self.get("name"), rest.concat())
    }
}

/// One parsed tag expression (`tag=spec`, `tag!=spec`, `tag=~re`, `tag!=~re`).
#[derive(Debug)]
struct TagExpr {
    tag: String,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Equal(String),
    NotEqual(String),
    Match(Regex),
    NotMatch(Regex),
}

impl TagExpr {
    fn parse(expr: &str) -> Result<TagExpr, String> {
        let invalid = || format!("Invalid tagspec {expr}");
        let op_at = expr.find(['!', '=']).ok_or_else(invalid)?;
        let (tag, rest) = expr.split_at(op_at);
        if tag.is_empty() || tag.contains(';') {
            return Err(invalid());
        }
        let (negate, rest) = match rest.strip_prefix("!=") {
            Some(r) => (true, r),
            None => (false, rest.strip_prefix('=').ok_or_else(invalid)?),
        };
        let (regex, spec) = match rest.strip_prefix('~') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if spec.contains(';') {
            return Err(invalid());
        }
        let test = if regex {
            // Anchored at the start, as graphite-web anchors it.
            let anchored = if spec.starts_with('^') {
                spec.to_string()
            } else {
                format!("^(?:{spec})")
            };
            let re = regex::RegexBuilder::new(&anchored)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("invalid regular expression in {expr}: {e}"))?;
            if negate {
                Test::NotMatch(re)
            } else {
                Test::Match(re)
            }
        } else if negate {
            Test::NotEqual(spec.to_string())
        } else {
            Test::Equal(spec.to_string())
        };
        Ok(TagExpr {
            tag: tag.to_string(),
            test,
        })
    }

    fn accepts(&self, value: &str) -> bool {
        match &self.test {
            Test::Equal(s) => value == s,
            Test::NotEqual(s) => value != s,
            Test::Match(re) => re.is_match(value),
            Test::NotMatch(re) => !re.is_match(value),
        }
    }
}

/// A tag's or a value's entry: its id (first-seen order, as graphite-web's
/// tables number them) and, for values, how many series carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id.
    pub id: u32,
    /// The tag or the value.
    pub text: String,
    /// Series with it (values only).
    pub count: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Normal-form names, sorted.
    series: BTreeSet<String>,
    /// tag -> value -> series names.
    postings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    tag_ids: HashMap<String, u32>,
    value_ids: HashMap<String, u32>,
}

impl Inner {
    fn add(&mut self, tagged: &Tagged) -> Option<String> {
        let path = tagged.path();
        if self.series.contains(&path) {
            return None;
        }
        for (tag, value) in &tagged.tags {
            let next = self.tag_ids.len() as u32 + 1;
            self.tag_ids.entry(tag.clone()).or_insert(next);
            let next = self.value_ids.len() as u32 + 1;
            self.value_ids.entry(value.clone()).or_insert(next);
            self.postings
                .entry(tag.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(path.clone());
        }
        self.series.insert(path.clone());
        Some(path)
    }

    fn remove(&mut self, tagged: &Tagged) -> bool {
        let path = tagged.path();
        if !self.series.remove(&path) {
            return false;
        }
        for (tag, value) in &tagged.tags {
            if let Some(values) = self.postings.get_mut(tag) {
                if let Some(names) = values.get_mut(value) {
                    names.remove(&path);
                    if names.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.postings.remove(tag);
                }
            }
        }
        true
    }
}

/// The index, shared by the writers (insert) and the read API.
#[derive(Debug, Default)]
pub struct TagIndex {
    inner: RwLock<Inner>,
    /// The names file, when the index is backed by a store.
    file: LineFile,
}

impl TagIndex {
    /// Reads the names file under `root` (if any) and appends to it from
    /// now on; returns how many series it held.
    pub fn load(&self, root: &Path) -> usize {
        let path = root.join(SERIES_FILE);
        let mut count = 0;
        if let Ok(file) = File::open(&path) {
            if let Ok(mut inner) = self.inner.write() {
                for line in BufReader::new(file).lines().map_while(Result::ok) {
                    if let Ok(tagged) = Tagged::parse(line.trim_end()) {
                        if inner.add(&tagged).is_some() {
                            count += 1;
                        }
                    }
                }
            }
        }
        self.file.bind(&path);
        count
    }

    /// Adds a series (a no-op when known); returns its normal form, or
    /// why carbon would refuse the name.
    pub fn insert(&self, name: &str) -> Result<String, String> {
        let tagged = Tagged::parse(name)?;
        let path = tagged.path();
        if self.inner.read().is_ok_and(|i| i.series.contains(&path)) {
            return Ok(path);
        }
        let added = match self.inner.write() {
            Ok(mut inner) => inner.add(&tagged),
            Err(_) => None,
        };
        if let Some(added) = added {
            self.file.append(&added);
        }
        Ok(path)
    }

    /// Forgets a series; the names file is rewritten without it.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        let tagged = Tagged::parse(name)?;
        let removed = match self.inner.write() {
            Ok(mut inner) => inner.remove(&tagged),
            Err(_) => false,
        };
        if removed {
            self.rewrite();
        }
        Ok(())
    }

    fn rewrite(&self) {
        self.file.replace(|| match self.inner.read() {
            Ok(inner) => inner.series.iter().cloned().collect(),
            Err(_) => Vec::new(),
        });
    }

    /// Series matching every expression, sorted (graphite-web's
    /// find_series). At least one expression must reject an empty value.
    pub fn find_series(&self, exprs: &[&str]) -> Result<Vec<String>, String> {
        let parsed = exprs
            .iter()
            .map(|e| TagExpr::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        let (narrowing, filters): (Vec<&TagExpr>, Vec<&TagExpr>) =
            parsed.iter().partition(|e| !e.accepts(""));
        if narrowing.is_empty() {
            return Err("At least one tagspec must not match the empty string".into());
        }
        let Ok(inner) = self.inner.read() else {
            return Ok(Vec::new());
        };
        let mut candidates: Option<BTreeSet<&String>> = None;
        for expr in narrowing {
            let mut matched: BTreeSet<&String> = BTreeSet::new();
            if let Some(values) = inner.postings.get(&expr.tag) {
                for (value, names) in values {
                    if expr.accepts(value) {
                        matched.extend(names.iter());
                    }
                }
            }
            candidates = Some(match candidates {
                None => matched,
                Some(c) => c.intersection(&matched).copied().collect(),
            });
        }
        let found = candidates.unwrap_or_default();
        Ok(found
            .into_iter()
            .filter(|name| {
                filters.is_empty()
                    || Tagged::parse(name)
                        .is_ok_and(|t| filters.iter().all(|f| f.accepts(t.get(&f.tag))))
            })
            .cloned()
            .collect())
    }

    /// Tags (sorted), those matching `filter` (a regex anchored at the
    /// start) at most `limit`.
    pub fn list_tags(
        &self,
        filter: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Listed>, String> {
        let filter = filter.filter(|f| !f.is_empty()).map(anchored).transpose()?;
        let Ok(inner) = self.inner.read() else {
            return Ok(Vec::new());
        };
        Ok(inner
            .postings
            .keys()
            .filter(|t| filter.as_ref().is_none_or(|re| re.is_match(t)))
            .take(limit.unwrap_or(usize::MAX))
            .map(|t| Listed {
                id: inner.tag_ids.get(t).copied().unwrap_or(0),
                text: t.clone(),
                count: 0,
            })
            .collect())
    }

    /// Whether `tag` is known, with its id.
    pub fn tag_id(&self, tag: &str) -> Option<u32> {
        let inner = self.inner.read().ok()?;
        inner
            .postings
            .contains_key(tag)
            .then(|| inner.tag_ids.get(tag).copied().unwrap_or(0))
    }

    /// Values of `tag` (sorted) with their series counts.
    pub fn list_values(
        &self,
        tag: &str,
        filter: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Listed>, String> {
        let filter = filter.filter(|f| !f.is_empty()).map(anchored).transpose()?;
        let Ok(inner) = self.inner.read() else {
            return Ok(Vec::new());
        };
        let Some(values) = inner.postings.get(tag) else {
            return Ok(Vec::new());
        };
        Ok(values
            .iter()
            .filter(|(v, _)| filter.as_ref().is_none_or(|re| re.is_match(v)))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(v, names)| Listed {
                id: inner.value_ids.get(v).copied().unwrap_or(0),
                text: v.clone(),
                count: names.len(),
            })
            .collect())
    }

    /// Tags of the series matching `exprs` (or of all series), without
    /// those the expressions name, starting with `prefix`; sorted, at most
    /// `limit`.
    pub fn auto_complete_tags(
        &self,
        exprs: &[&str],
        prefix: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, String> {
        let prefix = prefix.unwrap_or("");
        if exprs.is_empty() {
            let tags = self.list_tags(None, None)?.into_iter().map(|t| t.text);
            return Ok(tags.filter(|t| t.starts_with(prefix)).take(limit).collect());
        }
        let searched: Vec<String> = exprs
            .iter()
            .map(|e| TagExpr::parse(e).map(|e| e.tag))
            .collect::<Result<_, _>>()?;
        let mut out: BTreeSet<String> = BTreeSet::new();
        for name in self.find_series(exprs)? {
            if let Ok(t) = Tagged::parse(&name) {
                for (tag, _) in t.tags {
                    if !searched.contains(&tag) && tag.starts_with(prefix) {
                        out.insert(tag);
                    }
                }
            }
        }
        Ok(out.into_iter().take(limit).collect())
    }

    /// Values of `tag` among the series matching `exprs` (or all series),
    /// starting with `prefix`; sorted, at most `limit`.
    pub fn auto_complete_values(
        &self,
        exprs: &[&str],
        tag: &str,
        prefix: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, String> {
        let prefix = prefix.unwrap_or("");
        if exprs.is_empty() {
            let values = self
                .list_values(tag, None, None)?
                .into_iter()
                .map(|v| v.text);
            return Ok(values
                .filter(|v| v.starts_with(prefix))
                .take(limit)
                .collect());
        }
        let present = format!("{tag}!=");
        let mut all: Vec<&str> = exprs.to_vec();
        all.push(&present);
        let mut out: BTreeSet<String> = BTreeSet::new();
        for name in self.find_series(&all)? {
            if let Ok(t) = Tagged::parse(&name) {
                let value = t.get(tag);
                if !value.is_empty() && value.starts_with(prefix) {
                    out.insert(value.to_string());
                }
            }
        }
        Ok(out.into_iter().take(limit).collect())
    }

    /// How many series are known.
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |i| i.series.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn anchored(filter: &str) -> Result<Regex, String> {
    let pattern = if filter.starts_with('^') {
        filter.to_string()
    } else {
        format!("^(?:{filter})")
    };
    regex::RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression {filter}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> TagIndex {
        let index = TagIndex::default();
        for n in names {
            index.insert(n).unwrap();
        }
        index
    }

    #[test]
    fn expressions_match_as_graphite_web_matches_them() {
        let idx = index(&[
            "disk.used;server=web01;dc=eu",
            "disk.used;dc=us;server=web02",
            "cpu.load;server=web01",
        ]);
        assert_eq!(
            idx.find_series(&["name=disk.used"]).unwrap(),
            [
                "disk.used;dc=eu;server=web01",
                "disk.used;dc=us;server=web02"
            ]
        );
        assert_eq!(
            idx.find_series(&["server=web01", "dc=~e.*"]).unwrap(),
            ["disk.used;dc=eu;server=web01"]
        );
        // An expression that accepts "" also accepts a missing tag.
        assert_eq!(
            idx.find_series(&["server=web01", "dc!=eu"]).unwrap(),
            ["cpu.load;server=web01"]
        );
        assert_eq!(
            idx.find_series(&["server=~web0", "dc="]).unwrap(),
            ["cpu.load;server=web01"]
        );
        assert!(idx.find_series(&["server!=web01"]).is_err());
        assert!(idx.find_series(&["nonsense"]).is_err());
        assert!(idx.find_series(&["a=~("]).is_err());
    }

    #[test]
    fn autocomplete_leaves_out_the_searched_tags() {
        let idx = index(&[
            "disk.used;server=web01;dc=eu",
            "disk.used;dc=us;server=web02",
            "cpu.load;server=web01",
        ]);
        assert_eq!(
            idx.auto_complete_tags(&[], None, 100).unwrap(),
            ["dc", "name", "server"]
        );
        assert_eq!(
            idx.auto_complete_tags(&[], Some("se"), 100).unwrap(),
            ["server"]
        );
        assert_eq!(
            idx.auto_complete_tags(&["name=disk.used"], None, 100)
                .unwrap(),
            ["dc", "server"]
        );
        assert_eq!(
            idx.auto_complete_values(&["dc=eu"], "server", Some("web0"), 100)
                .unwrap(),
            ["web01"]
        );
        let values = idx.list_values("server", None, None).unwrap();
        assert_eq!(
            values
                .iter()
                .map(|v| (v.text.as_str(), v.count))
                .collect::<Vec<_>>(),
            [("web01", 2), ("web02", 1)]
        );
    }

    #[test]
    fn names_survive_a_restart_and_a_removal() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TagIndex::default();
        assert_eq!(idx.load(dir.path()), 0);
        idx.insert("m;b=2;a=1").unwrap();
        idx.insert("m;a=1;b=2").unwrap();
        idx.insert("n;a=1").unwrap();
        let again = TagIndex::default();
        assert_eq!(again.load(dir.path()), 2);
        again.remove("n;a=1").unwrap();
        let third = TagIndex::default();
        assert_eq!(third.load(dir.path()), 1);
        assert_eq!(third.find_series(&["a=1"]).unwrap(), ["m;a=1;b=2"]);
    }

    #[test]
    fn invalid_names_are_refused_with_carbons_reasons() {
        assert!(Tagged::parse(";a=1").is_err());
        assert!(Tagged::parse("m;a").is_err());
        assert!(Tagged::parse("m;a=~x").is_err());
        assert!(Tagged::parse("m;a!b=1").is_err());
        assert_eq!(Tagged::parse("m;name=x;a=1").unwrap().path(), "m;a=1");
    }
}
