//! Files written so that nothing is lost: atomic replacement, a fallback
//! location when the asked one cannot be written, and file-name-safe stems.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Writes JSON to `path` atomically: a temporary file in the same folder,
/// flushed and synced, then renamed over the destination.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Writes `value` as JSON to `path` atomically, never losing it to a
/// passing failure: a write that fails (a full open-file table, say) is
/// retried a few times; if `path` still cannot be written, the results go
/// to a file in the temporary folder instead. Returns where they went.
pub fn write_json_keeping<T: Serialize>(
    path: &Path,
    value: &T,
) -> anyhow::Result<std::path::PathBuf> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    let mut last = None;
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(250 * attempt));
        }
        match write_atomic(path, &bytes) {
            Ok(()) => return Ok(path.to_path_buf()),
            Err(e) => last = Some(e),
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.json".into());
    let fallback = std::env::temp_dir().join(format!("servegate-{}-{name}", std::process::id()));
    write_atomic(&fallback, &bytes)
        .map(|()| fallback)
        .map_err(|e| e.context(last.expect("a failed attempt")))
}

/// Writes `bytes` to `path` atomically (see `write_json_atomic`); the file
/// is readable by everyone, like one written in place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A file-name-safe form of a case name (`scenario::grid::c4` → `scenario__grid__c4`).
pub fn file_stem(name: &str) -> String {
    name.replace("::", "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results file that cannot be written where asked goes elsewhere,
    /// and the caller learns where: measurements are never dropped.
    #[test]
    fn unwritable_results_are_kept_in_the_temporary_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("out.json");
        assert_eq!(write_json_keeping(&ok, &vec![1, 2]).unwrap(), ok);
        // A file where a folder should be: the path can never be written.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let bad = blocker.join("out.json");
        let went = write_json_keeping(&bad, &vec![3, 4]).unwrap();
        assert_ne!(went, bad);
        let back: Vec<i32> =
            serde_json::from_str(&std::fs::read_to_string(&went).unwrap()).unwrap();
        assert_eq!(back, vec![3, 4]);
        std::fs::remove_file(went).unwrap();
    }
}
