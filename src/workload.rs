//! Prompt sources for workloads.

use std::path::{Path, PathBuf};

/// Loads the prompt set `name` from `dir`: `NAME.txt` (one prompt per non-empty
/// line, `#` starts a comment line) or `NAME.json` (a JSON array of strings).
pub fn load_prompt_set(dir: &Path, name: &str) -> Result<Vec<String>, String> {
    let candidates = prompt_set_paths(dir, name);
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(format!(
            "prompt set `{name}` not found (looked for {})",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prompts = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<Vec<String>>(&text)
            .map_err(|e| format!("{}: expected a JSON array of strings: {e}", path.display()))?
    } else {
        parse_text_prompts(&text)
    };
    if prompts.is_empty() {
        return Err(format!("{}: no prompts", path.display()));
    }
    Ok(prompts)
}

/// The files a prompt set name may refer to, in lookup order.
pub fn prompt_set_paths(dir: &Path, name: &str) -> Vec<PathBuf> {
    ["txt", "json"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .collect()
}

fn parse_text_prompts(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_skip_comments_and_blank_lines() {
        let p = parse_text_prompts("# header\n\nfirst prompt\n  second prompt  \n");
        assert_eq!(p, vec!["first prompt", "second prompt"]);
    }

    #[test]
    fn missing_set_names_the_paths_tried() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_prompt_set(dir.path(), "nope").unwrap_err();
        assert!(
            err.contains("nope.txt") && err.contains("nope.json"),
            "{err}"
        );
        std::fs::write(dir.path().join("j.json"), r#"["a", "b"]"#).unwrap();
        assert_eq!(load_prompt_set(dir.path(), "j").unwrap(), vec!["a", "b"]);
    }
}
