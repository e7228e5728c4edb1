//! Finds the line on which a dotted key is written in a TOML source, so that
//! errors reported by serde (which know the key but not the position) can
//! point at the line a user must edit.

use toml_edit::{Item, TableLike};

/// 1-based line of the deepest part of `path` present in `source`.
/// Returns `None` when not even the first segment is written in the file.
pub fn key_line(source: &str, path: &[String]) -> Option<usize> {
    walk(source, path).map(|(line, _)| line)
}

/// 1-based line of `path` when the whole key is written in `source`.
pub fn written_key_line(source: &str, path: &[String]) -> Option<usize> {
    walk(source, path)
        .filter(|&(_, depth)| depth == path.len())
        .map(|(line, _)| line)
}

/// The line of the deepest part of `path` written, and how many segments deep it is.
fn walk(source: &str, path: &[String]) -> Option<(usize, usize)> {
    let doc = toml_edit::ImDocument::parse(source).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    let mut found: Option<(usize, usize)> = None;
    for (depth, segment) in path.iter().enumerate() {
        let Some((key, item)) = table.get_key_value(segment) else {
            break;
        };
        let offset = key.span().or_else(|| item.span()).map(|span| span.start);
        if let Some(offset) = offset {
            found = Some((line_of(source, offset), depth + 1));
        }
        match item {
            Item::Table(t) => table = t,
            Item::Value(toml_edit::Value::InlineTable(t)) => table = t,
            _ => break,
        }
    }
    found
}

/// 1-based line containing byte `offset`.
pub fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn finds_keys_in_headers_inline_tables_and_dotted_keys() {
        let src = "model = \"m\"\n\n[workload]\nmax_tokens = 64\nconcurrency = 2\n\n[targets.a]\nsim = { ttft_ms = 3 }\n";
        assert_eq!(key_line(src, &path("model")), Some(1));
        assert_eq!(key_line(src, &path("workload.concurrency")), Some(5));
        assert_eq!(key_line(src, &path("targets.a.sim.ttft_ms")), Some(8));
        // A key missing from the file points at its deepest written parent.
        assert_eq!(key_line(src, &path("workload.nope")), Some(3));
        assert_eq!(key_line(src, &path("absent")), None);
        assert_eq!(written_key_line(src, &path("workload.nope")), None);
        assert_eq!(
            written_key_line(src, &path("targets.a.sim.ttft_ms")),
            Some(8)
        );
    }
}
