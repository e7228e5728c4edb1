//! `{port}` and `{model}` in a command target's argv and environment. Pure.
//!
//! `{name}` with a known name is replaced; `{{` and `}}` stand for literal
//! braces; any other brace is kept as written, so a JSON argument such as
//! `{"max_num_seqs": 64}` passes through unchanged. `{word}` with an unknown
//! word is an error, which catches typos like `{prot}`.

/// Names a command may use.
pub const KNOWN: &[&str] = &["port", "model"];

/// Values for the placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars {
    pub port: u16,
    pub model: String,
}

impl Vars {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "port" => Some(self.port.to_string()),
            "model" => Some(self.model.clone()),
            _ => None,
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `s` into literal text and `{word}` placeholders.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = r;
        } else if rest.starts_with('{') {
            match rest[1..].find('}') {
                Some(end) if is_word(&rest[1..1 + end]) => {
                    out.push(Piece::Var(&rest[1..1 + end]));
                    rest = &rest[end + 2..];
                }
                _ => {
                    out.push(Piece::Text("{"));
                    rest = &rest[1..];
                }
            }
        } else {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..]
                .find(['{', '}'])
                .map_or(rest.len(), |i| i + first);
            out.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// Rejects unknown placeholders.
pub fn check(s: &str) -> Result<(), String> {
    for p in pieces(s) {
        if let Piece::Var(name) = p {
            if !KNOWN.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{name}}}` in {s:?}; known: {{port}}, {{model}} (write `{{{{` for a literal brace)"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `s` uses placeholder `name`.
pub fn uses(s: &str, name: &str) -> bool {
    pieces(s)
        .iter()
        .any(|p| matches!(p, Piece::Var(n) if *n == name))
}

/// Replaces every placeholder; unknown ones are an error.
pub fn substitute(s: &str, vars: &Vars) -> Result<String, String> {
    check(s)?;
    Ok(pieces(s)
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t.to_string(),
            Piece::Var(name) => vars.get(name).expect("checked"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            port: 8123,
            model: "llama-3-8b".into(),
        }
    }

    #[test]
    fn replaces_known_placeholders() {
        assert_eq!(substitute("--port={port}", &vars()).unwrap(), "--port=8123");
        assert_eq!(
            substitute("{model}:{port}/{model}", &vars()).unwrap(),
            "llama-3-8b:8123/llama-3-8b"
        );
        assert_eq!(substitute("plain", &vars()).unwrap(), "plain");
        assert_eq!(substitute("", &vars()).unwrap(), "");
    }

    #[test]
    fn braces_that_are_not_placeholders_pass_through() {
        let json = r#"{"max_num_seqs": 64, "port": {port}}"#;
        assert_eq!(
            substitute(json, &vars()).unwrap(),
            r#"{"max_num_seqs": 64, "port": 8123}"#
        );
        assert_eq!(substitute("{{port}}", &vars()).unwrap(), "{port}");
        assert_eq!(substitute("a}b{", &vars()).unwrap(), "a}b{");
        assert_eq!(substitute("{ port }", &vars()).unwrap(), "{ port }");
        assert_eq!(substitute("ü{port}é", &vars()).unwrap(), "ü8123é");
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        let e = substitute("--port {prot}", &vars()).unwrap_err();
        assert!(e.contains("`{prot}`") && e.contains("{port}"), "{e}");
        assert!(check("{model}{port}").is_ok());
    }

    #[test]
    fn detects_use() {
        assert!(uses("--port={port}", "port"));
        assert!(!uses("--port={{port}}", "port"));
        assert!(!uses("--model {model}", "port"));
    }
}
