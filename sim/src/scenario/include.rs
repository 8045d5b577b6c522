//! `include = "base.toml"`: a scenario built on another file, and where its keys come from.
//!
//! The included file is read first (its path is relative to the including file), then the
//! including file's keys override its values: tables merge key by key, any other value
//! (numbers, strings, arrays, including `[[faults]]`) is replaced whole. Includes nest up to
//! [`INCLUDE_DEPTH_MAX`] files deep; a file that includes itself, directly or through
//! others, is an error that names the cycle.
//!
//! Every file keeps its own [`KeyIndex`], so an error about a merged value still names the
//! file and line that wrote it ([`Locator`]).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::ScenarioError;
use super::locate::{KeyIndex, line_of};

/// Files at most in one chain of includes.
pub const INCLUDE_DEPTH_MAX: usize = 16;

/// One file of a scenario.
#[derive(Debug)]
struct Source {
    path: String,
    text: String,
    index: KeyIndex,
}

/// Maps byte spans of the parsed text and key paths to the file and line that wrote them.
#[derive(Debug)]
pub(super) struct Locator {
    /// The text that is deserialized: the file itself, or the merged chain.
    pub text: String,
    /// The index of [`Locator::text`].
    pub index: KeyIndex,
    /// The files of the chain, the most included first, the file itself last.
    sources: Vec<Source>,
}

impl Locator {
    /// Reads `text` (the file at `path`) and every file it includes.
    pub fn resolve(text: &str, path: &str) -> Result<Locator, ScenarioError> {
        let mut sources = Vec::new();
        let mut stack = vec![PathBuf::from(path)];
        let table = chain(text, path, &mut stack, &mut sources)?;
        if sources.len() == 1 {
            let Some(top) = sources.pop() else {
                unreachable!("one source was just counted")
            };
            return Ok(Locator {
                text: top.text.clone(),
                index: top.index.clone(),
                sources: vec![top],
            });
        }
        let merged = toml::to_string(&table).map_err(|e| ScenarioError::Invalid {
            path: path.to_string(),
            line: 1,
            message: format!("cannot merge the included files: {e}"),
        })?;
        let index = KeyIndex::build(&merged).map_err(|e| ScenarioError::Invalid {
            path: path.to_string(),
            line: 1,
            message: format!("cannot merge the included files: {}", e.message()),
        })?;
        Ok(Locator {
            text: merged,
            index,
            sources,
        })
    }

    fn top(&self) -> &str {
        self.sources.last().map_or("?", |s| s.path.as_str())
    }

    /// An error about the text at `span` of [`Locator::text`].
    pub fn error_at(&self, span: Range<usize>, message: String) -> ScenarioError {
        if self.sources.len() == 1 {
            return self.invalid(
                self.top().to_string(),
                line_of(&self.text, span.start),
                message,
            );
        }
        let (path, line) = match self.index.path_at(&span) {
            Some(key) => self.locate(key),
            None => (self.top().to_string(), 1),
        };
        self.invalid(path, line, message)
    }

    /// An error about the value at key path `key`, or its closest written parent.
    pub fn error(&self, key: &str, message: String) -> ScenarioError {
        let (path, line) = self.locate(key);
        self.invalid(path, line, message)
    }

    /// The file and line of `key` if some file writes it.
    pub fn written(&self, key: &str) -> Option<(String, usize)> {
        self.sources.iter().rev().find_map(|s| {
            let offset = s.index.offset_of_written(key)?;
            Some((s.path.clone(), line_of(&s.text, offset)))
        })
    }

    /// The file and line of `key`, or of its closest parent table that some file writes.
    fn locate(&self, key: &str) -> (String, usize) {
        let mut key = key;
        loop {
            if let Some(found) = self.written(key) {
                return found;
            }
            match key.rfind('.') {
                Some(i) => key = &key[..i],
                None => return (self.top().to_string(), 1),
            }
        }
    }

    fn invalid(&self, path: String, line: usize, message: String) -> ScenarioError {
        ScenarioError::Invalid {
            path,
            line,
            message,
        }
    }
}

/// Parses `text` (from `path`), resolving its include first; pushes every file read onto
/// `sources`, the most included first, and returns the merged table.
fn chain(
    text: &str,
    path: &str,
    stack: &mut Vec<PathBuf>,
    sources: &mut Vec<Source>,
) -> Result<toml::Table, ScenarioError> {
    let fail = |offset: usize, message: String| ScenarioError::Invalid {
        path: path.to_string(),
        line: line_of(text, offset),
        message,
    };
    let index = KeyIndex::build(text)
        .map_err(|e| fail(e.span().map_or(0, |s| s.start), e.message().to_string()))?;
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| fail(0, e.message().to_string()))?;
    let at_include = index.offset_of_written("include").unwrap_or(0);
    let merged = match table.remove("include") {
        None => table,
        Some(toml::Value::String(name)) => {
            let base_path = Path::new(path)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&name);
            let shown = base_path.display().to_string();
            let canonical = std::fs::canonicalize(&base_path).map_err(|e| {
                fail(
                    at_include,
                    format!(
                        "cannot read included file {shown}: {e}; the path is relative to this file"
                    ),
                )
            })?;
            let seen: Vec<PathBuf> = stack
                .iter()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect();
            if seen.contains(&canonical) {
                let mut names: Vec<String> =
                    stack.iter().map(|p| p.display().to_string()).collect();
                names.push(shown);
                return Err(fail(
                    at_include,
                    format!(
                        "include cycle: {}; remove one of these includes",
                        names.join(" -> ")
                    ),
                ));
            }
            if stack.len() >= INCLUDE_DEPTH_MAX {
                return Err(fail(
                    at_include,
                    format!("includes nest more than {INCLUDE_DEPTH_MAX} files deep"),
                ));
            }
            let base_text = std::fs::read_to_string(&base_path).map_err(|e| {
                fail(
                    at_include,
                    format!("cannot read included file {shown}: {e}"),
                )
            })?;
            stack.push(base_path);
            let base = chain(&base_text, &shown, stack, sources)?;
            stack.pop();
            merge(base, table)
        }
        Some(other) => {
            return Err(fail(
                at_include,
                format!(
                    "`include` must be a file name in quotes, found {}",
                    other.type_str()
                ),
            ));
        }
    };
    sources.push(Source {
        path: path.to_string(),
        text: text.to_string(),
        index,
    });
    Ok(merged)
}

/// `over` applied on top of `base`: tables merge key by key, other values are replaced.
fn merge(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (key, value) in over {
        let value = match (base.remove(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => toml::Value::Table(merge(b, o)),
            (_, v) => v,
        };
        base.insert(key, value);
    }
    base
}
