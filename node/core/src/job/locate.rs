//! Finding the line of a key in a spec's text, for error messages.

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The 1-based line of the key at `segments` (e.g. `["resources", "cores"]`) in TOML `text`:
/// the deepest segment found (a table's header when the key itself is absent).
pub(super) fn toml_line(text: &str, segments: &[String]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut line = None;
    for seg in segments {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == seg) else {
            break;
        };
        line = Some(line_column(text, key.span().start).0);
        match value.get_ref().as_table() {
            Some(t) => table = t,
            None => break,
        }
    }
    line
}

/// The 1-based line of the key at `segments` in YAML `text`, for block mappings: each
/// segment is looked for among the keys indented more than its parent's, up to the end of
/// the parent's block.
pub(super) fn yaml_line(text: &str, segments: &[String]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for seg in segments {
        let mut hit = None;
        for (i, raw) in lines.iter().enumerate().skip(start) {
            let body = raw.trim_start();
            if body.is_empty() || body.starts_with('#') || body == "---" {
                continue;
            }
            let indent = raw.len() - body.len();
            if parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            let key = body.split(':').next().unwrap_or("").trim();
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            if key == seg && body.contains(':') {
                hit = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = hit else { break };
        found = Some(i + 1);
        start = i + 1;
        parent_indent = Some(indent);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a\nbc\n", 0), (1, 1));
        assert_eq!(line_column("a\nbc\n", 3), (2, 2));
    }

    #[test]
    fn toml_keys_in_tables_dotted_and_inline() {
        let text = "image = \"x\"\n\n[resources]\n# c\ncores = 1\nmemory_mb = 0\n\
                    [env]\nA = \"1\"\n";
        assert_eq!(toml_line(text, &segs(&["image"])), Some(1));
        assert_eq!(toml_line(text, &segs(&["resources", "memory_mb"])), Some(6));
        assert_eq!(toml_line(text, &segs(&["resources", "gpus"])), Some(3));
        assert_eq!(toml_line(text, &segs(&["env", "A"])), Some(8));
        assert_eq!(toml_line(text, &segs(&["nope"])), None);
        let dotted = "a = 1\nresources.cores = 0\n";
        assert_eq!(toml_line(dotted, &segs(&["resources", "cores"])), Some(2));
        let inline = "a = 1\n\nresources = { cores = 0, memory_mb = 1 }\n";
        assert_eq!(toml_line(inline, &segs(&["resources", "cores"])), Some(3));
    }

    #[test]
    fn yaml_keys_by_indentation() {
        let text = "image: x\nenv:\n  A: b\nresources:\n  # c\n  cores: 1\n  memory_mb: 0\n\
                    constraints:\n  executor: podman\n";
        assert_eq!(yaml_line(text, &segs(&["image"])), Some(1));
        assert_eq!(yaml_line(text, &segs(&["resources", "memory_mb"])), Some(7));
        assert_eq!(yaml_line(text, &segs(&["env", "A"])), Some(3));
        assert_eq!(
            yaml_line(text, &segs(&["constraints", "executor"])),
            Some(9)
        );
        // A key of another block is not taken for the one asked.
        assert_eq!(yaml_line(text, &segs(&["env", "cores"])), Some(2));
        assert_eq!(yaml_line(text, &segs(&["nope"])), None);
    }
}
