//! Regular expressions written for Python's `re` (lm-evaluation-harness's
//! answer filters and `exact_match` options), compiled with the same meaning.

/// A pattern written for Python's `re`, compiled with the same meaning.
///
/// Hand-rolled on top of `fancy-regex` because no crate implements Python's
/// `re`; the syntax the two share covers what lm-eval's filters and
/// `regexes_to_ignore` use, except two anchors translated here: `$` (Python
/// also matches before a final newline) and `\Z` (Rust's `\z`).
pub fn python_regex(pattern: &str) -> Result<fancy_regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str(r"\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal member.
                let rest = chars.as_str();
                let skip = if rest.starts_with("^]") {
                    2
                } else if rest.starts_with(']') {
                    1
                } else {
                    0
                };
                for _ in 0..skip {
                    let member = chars.next().expect("checked");
                    if member == ']' {
                        out.push('\\');
                    }
                    out.push(member);
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(r"(?=\n?\z)"),
            _ => out.push(c),
        }
    }
    fancy_regex::Regex::new(&out).map_err(|e| format!("regex `{pattern}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_anchors_and_classes_translate() {
        let re = python_regex(r"a$").unwrap();
        assert!(re.is_match("xa\n").unwrap());
        assert!(!re.is_match("a\nb").unwrap());
        assert!(python_regex(r"[$]").unwrap().is_match("$").unwrap());
        assert!(python_regex(r"[]a]").unwrap().is_match("]").unwrap());
        assert!(python_regex(r"x\Z").unwrap().is_match("x").unwrap());
        assert!(python_regex(r"(").is_err());
    }
}
