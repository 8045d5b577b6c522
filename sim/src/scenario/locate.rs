//! From byte offsets to lines and key paths, and from serde's wording to ours.
//!
//! The file is parsed once more into toml's spanned document tree; every key is recorded
//! with the span of its name, the span of its value and its dotted path (`peers.count`).
//! An error span from deserialization, or the path of a value that failed a semantic check,
//! then names the line and the key.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One key of the document.
#[derive(Debug, Clone)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
    path: String,
}

/// Every key of a document with its spans.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyIndex {
    entries: Vec<Entry>,
}

impl KeyIndex {
    /// Indexes `text`; fails with toml's syntax error if it is not TOML.
    pub fn build(text: &str) -> Result<KeyIndex, toml::de::Error> {
        let doc = DeTable::parse(text)?;
        let mut index = KeyIndex::default();
        index.walk(doc.get_ref(), "");
        Ok(index)
    }

    fn walk(&mut self, table: &DeTable<'_>, prefix: &str) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            self.entries.push(Entry {
                key: key.span(),
                value: value.span(),
                path: path.clone(),
            });
            match value.get_ref() {
                DeValue::Table(inner) => self.walk(inner, &path),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let DeValue::Table(inner) = item.get_ref() {
                            let item_path = format!("{path}.{i}");
                            self.entries.push(Entry {
                                key: item.span(),
                                value: item.span(),
                                path: item_path.clone(),
                            });
                            self.walk(inner, &item_path);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The path of the key whose name is at `span`, or whose value is the smallest that
    /// contains `span`.
    pub fn path_at(&self, span: &Range<usize>) -> Option<&str> {
        if let Some(e) = self.entries.iter().find(|e| e.key == *span) {
            return Some(&e.path);
        }
        self.entries
            .iter()
            .filter(|e| e.value.start <= span.start && span.end <= e.value.end)
            .min_by_key(|e| e.value.len())
            .map(|e| e.path.as_str())
    }

    /// The start of `path` if it is written in the file.
    pub fn offset_of_written(&self, path: &str) -> Option<usize> {
        let e = self.entries.iter().find(|e| e.path == path)?;
        Some(e.value.start.min(e.key.start))
    }

    /// The start of `path`, or of its closest parent table that is written.
    #[cfg(test)]
    pub fn offset_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(offset) = self.offset_of_written(path) {
                return Some(offset);
            }
            path = &path[..path.rfind('.')?];
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// `[peers]` for table `peers`, `top level` for the root.
pub(super) fn table_name(table: &str) -> String {
    if table.is_empty() {
        "at top level".to_string()
    } else {
        format!("in [{table}]")
    }
}

/// Splits `peers.count` into (`peers`, `count`).
fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The names in backticks in `text`, e.g. the keys toml lists after `expected`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// serde's type names in words.
fn expected_in_words(expected: &str) -> String {
    match expected.trim() {
        "u64" => "a whole number of at least 0".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map"
        | "struct RawPeers"
        | "struct RawLatency"
        | "struct RawNode"
        | "struct RawResources"
        | "struct RawFault"
        | "struct RawExpect"
        | "struct RawDebug"
        | "struct RawClass"
        | "struct RawDistTable"
        | "struct RawWorkload"
        | "struct LimitsConfig"
        | "struct ScopeOverride"
        | "struct GateLimits" => "a table".into(),
        "bool" | "a boolean" => "true or false".into(),
        other => other.to_string(),
    }
}

/// Rewrites a deserialization message about the key at `path` (if known) into one that
/// names the key and says what is expected.
pub(super) fn describe(message: &str, path: Option<&str>) -> String {
    let (table, _) = path.map(split_path).unwrap_or(("", ""));
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = quoted(rest);
        let (key, known) = names
            .split_first()
            .map_or(("?", &[][..]), |(k, rest)| (*k, rest));
        // The key itself was indexed: its table is the parent of its path.
        return format!(
            "unknown key `{key}` {} (known: {})",
            table_name(table),
            known.join(", ")
        );
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let key = quoted(rest).first().copied().unwrap_or("?");
        // The span is the table the key is missing from.
        let table = path.unwrap_or("");
        return format!("missing key `{key}` {}", table_name(table));
    }
    if message == "duplicate key" {
        return format!("duplicate key `{}`", path.unwrap_or("?"));
    }
    let key = path.unwrap_or("value");
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            let found = found.replace(" as i128", "");
            return format!(
                "`{key}` must be {}, found {found}",
                expected_in_words(expected)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let names = quoted(rest);
        if let Some((found, known)) = names.split_first() {
            return format!(
                "`{key}` must be one of {}, found `{found}`",
                known.join(", ")
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        return format!("`{key}` has length {rest}");
    }
    match path {
        Some(p) => format!("{message} (at `{p}`)"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_lines_are_found() {
        let text = "a = 1\n[peers]\ncount = 2\n[x.y]\nz = [1, 2]\n";
        let index = KeyIndex::build(text).unwrap();
        let z = text.find("[1, 2]").unwrap();
        assert_eq!(index.path_at(&(z + 1..z + 2)), Some("x.y.z"));
        let count = text.find("count").unwrap();
        assert_eq!(index.path_at(&(count..count + 5)), Some("peers.count"));
        assert_eq!(line_of(text, index.offset_of("peers.count").unwrap()), 3);
        assert_eq!(
            line_of(text, index.offset_of("peers.bootstrap").unwrap()),
            2
        );
        assert_eq!(index.offset_of("nothing"), None);
        assert_eq!(line_of(text, 0), 1);
    }

    #[test]
    fn serde_wording_is_rewritten() {
        assert_eq!(
            describe(
                "unknown field `pears`, expected `count` or `bootstrap`",
                Some("peers.pears")
            ),
            "unknown key `pears` in [peers] (known: count, bootstrap)"
        );
        assert_eq!(
            describe(
                "invalid type: string \"a\", expected u64",
                Some("peers.count")
            ),
            "`peers.count` must be a whole number of at least 0, found string \"a\""
        );
        assert_eq!(
            describe("missing field `count`", Some("peers")),
            "missing key `count` in [peers]"
        );
        assert_eq!(
            describe("missing field `name`", None),
            "missing key `name` at top level"
        );
    }
}
