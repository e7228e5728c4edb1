//! Finding and reading task records: JSONL, JSON, Parquet, the Hugging Face cache.
//!
//! A task's records are looked for, in order, in a file the suite names for
//! it, the suite's data folder, the data folder given by `--data-dir` or
//! `SERVEGATE_DATA_DIR`, and the Hugging Face hub cache, where `datasets` and
//! `huggingface-cli download` keep the Hub's Parquet files. Records keep the
//! Hub's field names whatever the format, so one task definition reads them all.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde_json::{Map, Number, Value};

/// The extensions a data folder is searched for, in this order.
pub const EXTENSIONS: [&str; 3] = ["jsonl", "json", "parquet"];

/// Where a task's records were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSource {
    /// A `.jsonl`, `.json` or `.parquet` file.
    File(PathBuf),
    /// The Parquet shards of one config and split of a Hub dataset in the
    /// Hugging Face cache, in the order they are read.
    HubCache { repo: String, files: Vec<PathBuf> },
}

impl fmt::Display for RecordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordSource::File(path) => write!(f, "{}", path.display()),
            RecordSource::HubCache { repo, files } => {
                write!(f, "{repo} from the Hugging Face cache")?;
                match files.as_slice() {
                    [] => Ok(()),
                    [one] => write!(f, " ({})", one.display()),
                    [first, rest @ ..] => {
                        write!(f, " ({} and {} more shards)", first.display(), rest.len())
                    }
                }
            }
        }
    }
}

/// Reads every record of a `.jsonl`, `.json` or `.parquet` file as a JSON object.
///
/// JSONL holds one object per line (blank lines are skipped). JSON holds an
/// array of objects, or an object whose one list field holds them. Parquet
/// rows keep their column names; lists become arrays and structs objects.
pub fn read_records(path: &Path) -> Result<Vec<Value>, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl") => read_jsonl(path),
        Some("json") => read_json(path),
        Some("parquet") => read_parquet(path),
        _ => Err(format!(
            "{}: unknown record format (expected a .jsonl, .json or .parquet file)",
            path.display()
        )),
    }
}

/// Reads the records a [`locate`] call found.
pub fn read_source(src: &RecordSource) -> Result<Vec<Value>, String> {
    match src {
        RecordSource::File(path) => read_records(path),
        RecordSource::HubCache { files, .. } => {
            let mut records = Vec::new();
            for file in files {
                records.extend(read_parquet(file)?);
            }
            Ok(records)
        }
    }
}

/// Finds a task's records: the first that exists of `explicit`,
/// `<suite_folder>/<task>.{jsonl,json,parquet}`,
/// `<data_dir>/<task>.{jsonl,json,parquet}` and, when `hub` names a dataset
/// as `(repo, config, split)`, its Parquet files in the Hugging Face cache.
///
/// An `explicit` file that does not exist is an error: a file named on
/// purpose is never silently replaced by other data. When nothing is found,
/// the error lists every place looked at.
pub fn locate(
    task: &str,
    explicit: Option<&Path>,
    suite_folder: Option<&Path>,
    data_dir: Option<&Path>,
    hub: Option<(&str, Option<&str>, &str)>,
) -> Result<RecordSource, String> {
    let root = hub.and_then(|_| hub_cache_root());
    locate_in(task, explicit, suite_folder, data_dir, hub, root.as_deref())
}

/// Few-shot records of a task, such as mmlu's `dev` split: `<task>_<split>`
/// is looked for as [`locate`] looks for a task (e.g. `mmlu_dev.jsonl`), and
/// `hub` names the dataset's repo and config, whose `split` is read.
pub fn fewshot_records(
    task: &str,
    split: &str,
    explicit: Option<&Path>,
    suite_folder: Option<&Path>,
    data_dir: Option<&Path>,
    hub: Option<(&str, Option<&str>)>,
) -> Result<Vec<Value>, String> {
    let name = format!("{task}_{split}");
    let hub = hub.map(|(repo, config)| (repo, config, split));
    read_source(&locate(&name, explicit, suite_folder, data_dir, hub)?)
}

/// The `tokenizer.json` of a model in the Hugging Face cache, if it was downloaded.
pub fn cached_tokenizer(model: &str) -> Option<PathBuf> {
    cached_tokenizer_in(&hub_cache_root()?, model)
}

/// The Hugging Face hub cache folder, as `huggingface_hub` chooses it:
/// `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `hub` under
/// `HF_HOME`, else `huggingface/hub` under `XDG_CACHE_HOME` or `~/.cache`.
/// `None` when none of these can be known.
pub fn hub_cache_root() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Some(PathBuf::from(dir));
    }
    if var("HF_HOME").is_some() {
        return Some(Cache::from_env().path().clone());
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("huggingface").join("hub"));
    }
    // `Cache::default` needs a home folder and panics without one.
    var("HOME")?;
    Some(Cache::default().path().clone())
}

fn locate_in(
    task: &str,
    explicit: Option<&Path>,
    suite_folder: Option<&Path>,
    data_dir: Option<&Path>,
    hub: Option<(&str, Option<&str>, &str)>,
    cache_root: Option<&Path>,
) -> Result<RecordSource, String> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(RecordSource::File(path.to_path_buf()));
        }
        return Err(format!(
            "no records for {task}: {} does not exist",
            path.display()
        ));
    }
    let mut looked = Vec::new();
    let folders = [
        ("suite data folder", suite_folder),
        ("data folder (--data-dir or SERVEGATE_DATA_DIR)", data_dir),
    ];
    for (what, folder) in folders {
        let Some(dir) = folder else {
            looked.push(format!("{what}: not set"));
            continue;
        };
        if let Some(path) = find_in_folder(dir, task) {
            return Ok(RecordSource::File(path));
        }
        let absent = if dir.is_dir() { "" } else { " (folder absent)" };
        looked.push(format!(
            "{what}: {}{absent}",
            dir.join(format!("{task}.{{{}}}", EXTENSIONS.join(",")))
                .display()
        ));
    }
    match (hub, cache_root) {
        (None, _) => looked.push("Hugging Face cache: the task names no Hub dataset".into()),
        (Some((repo, ..)), None) => looked.push(format!(
            "Hugging Face cache: {repo} not looked for, the cache's location is unknown \
             (set HF_HUB_CACHE or HF_HOME)"
        )),
        (Some((repo, config, split)), Some(root)) => {
            let dir = root.join(Repo::dataset(repo.to_string()).folder_name());
            match hub_files(&dir, config, split) {
                Ok(files) => {
                    return Ok(RecordSource::HubCache {
                        repo: repo.to_string(),
                        files,
                    })
                }
                Err(why) => looked.push(format!("Hugging Face cache: {} {why}", dir.display())),
            }
        }
    }
    let mut msg = format!("no records for {task}; looked at:");
    for place in &looked {
        msg.push_str("\n  - ");
        msg.push_str(place);
    }
    msg.push_str(&format!(
        "\nPut {task}.jsonl or {task}.parquet (with the Hub's field names) in a data folder"
    ));
    if let Some((repo, ..)) = hub {
        msg.push_str(&format!(
            ", or download {repo}'s Parquet files into the Hugging Face cache"
        ));
    }
    msg.push('.');
    Err(msg)
}

/// `<dir>/<task>.<ext>` for the first extension that exists.
fn find_in_folder(dir: &Path, task: &str) -> Option<PathBuf> {
    EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{task}.{ext}")))
        .find(|p| p.is_file())
}

/// Where, inside a snapshot, the Hub keeps the Parquet files of one config
/// and split: a folder and, unless every Parquet file in it belongs to the
/// split, the split's file name prefix.
struct Layout {
    dir: PathBuf,
    split_prefix: Option<String>,
}

impl Layout {
    fn describe(&self) -> String {
        let name = match &self.split_prefix {
            Some(split) => format!("{split}-*.parquet"),
            None => "*.parquet".to_string(),
        };
        let dir = self.dir.to_string_lossy();
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    }

    /// The layout's files in one snapshot, in name order.
    fn files(&self, snapshot: &Path) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(snapshot.join(&self.dir)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    return false;
                };
                let Some(stem) = name.strip_suffix(".parquet") else {
                    return false;
                };
                match &self.split_prefix {
                    Some(split) => {
                        stem == split
                            || stem
                                .strip_prefix(split.as_str())
                                .is_some_and(|rest| rest.starts_with('-'))
                    }
                    None => true,
                }
            })
            // Snapshot entries are links into the blob store; a broken one is no file.
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }
}

/// The layouts the Hub uses for a config's split, most specific first:
/// `ARC-Easy/test-00000-of-00001.parquet`, `all/dev-00000-of-00001.parquet`,
/// the Parquet conversion's `{config}/{split}/0000.parquet`, and for a
/// dataset with no named config `data/validation-*.parquet`,
/// `default/validation/0000.parquet` or `validation-*.parquet`.
fn layouts(config: Option<&str>, split: &str) -> Vec<Layout> {
    let prefix = Some(split.to_string());
    let mut out = Vec::new();
    if let Some(config) = config {
        out.push(Layout {
            dir: PathBuf::from(config),
            split_prefix: prefix.clone(),
        });
        out.push(Layout {
            dir: Path::new(config).join(split),
            split_prefix: None,
        });
        out.push(Layout {
            dir: Path::new("data").join(config),
            split_prefix: prefix.clone(),
        });
    }
    if config.is_none_or(|c| c == "default") {
        out.push(Layout {
            dir: PathBuf::from("data"),
            split_prefix: prefix.clone(),
        });
        if config.is_none() {
            out.push(Layout {
                dir: Path::new("default").join(split),
                split_prefix: None,
            });
        }
        out.push(Layout {
            dir: PathBuf::new(),
            split_prefix: prefix,
        });
    }
    out
}

/// The Parquet files of a config's split in a cached dataset (`dir` is its
/// `datasets--org--name` folder), or why there are none.
fn hub_files(dir: &Path, config: Option<&str>, split: &str) -> Result<Vec<PathBuf>, String> {
    if !dir.is_dir() {
        return Err("(absent)".into());
    }
    let snapshots = snapshots(dir);
    if snapshots.is_empty() {
        return Err("(present, but holds no snapshots)".into());
    }
    let layouts = layouts(config, split);
    for snapshot in &snapshots {
        for layout in &layouts {
            let files = layout.files(snapshot);
            if !files.is_empty() {
                return Ok(files);
            }
        }
    }
    let wanted: Vec<String> = layouts.iter().map(Layout::describe).collect();
    Err(format!(
        "(present, but no snapshot holds {}{split}: looked for {} under snapshots/*/)",
        config
            .map(|c| format!("config {c}, split "))
            .unwrap_or_default(),
        wanted.join(", ")
    ))
}

/// A cached repo's snapshot folders: the one `refs/main` names first, then
/// the others, newest first.
fn snapshots(repo_dir: &Path) -> Vec<PathBuf> {
    let snap_dir = repo_dir.join("snapshots");
    let main = fs::read_to_string(repo_dir.join("refs").join("main"))
        .ok()
        .map(|hash| snap_dir.join(hash.trim()))
        .filter(|p| p.is_dir());
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&snap_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir() && Some(p) != main.as_ref())
                .map(|p| {
                    let modified = fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (modified, p)
                })
                .collect()
        })
        .unwrap_or_default();
    others.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    main.into_iter()
        .chain(others.into_iter().map(|(_, p)| p))
        .collect()
}

fn cached_tokenizer_in(root: &Path, model: &str) -> Option<PathBuf> {
    let cache = Cache::new(root.to_path_buf());
    if let Some(path) = cache.model(model.to_string()).get("tokenizer.json") {
        return Some(path);
    }
    let dir = root.join(Repo::model(model.to_string()).folder_name());
    snapshots(&dir)
        .into_iter()
        .map(|s| s.join("tokenizer.json"))
        .find(|p| p.is_file())
}

fn read_text(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// serde_json's message without its " at line L column C" tail.
fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    msg.strip_suffix(&tail).unwrap_or(&msg).to_string()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>, String> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| format!("{at}:{}: {}", e.column(), json_message(&e)))?;
        if !value.is_object() {
            return Err(format!(
                "{at}: expected a JSON object, found {}",
                kind(&value)
            ));
        }
        records.push(value);
    }
    Ok(records)
}

fn read_json(path: &Path) -> Result<Vec<Value>, String> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line(),
            e.column(),
            json_message(&e)
        )
    })?;
    let records = match value {
        Value::Array(items) => items,
        Value::Object(map) => {
            let mut lists: Vec<(String, Value)> =
                map.into_iter().filter(|(_, v)| v.is_array()).collect();
            if lists.len() != 1 {
                let names: Vec<&str> = lists.iter().map(|(k, _)| k.as_str()).collect();
                return Err(format!(
                    "{}: expected an array of records, or an object with one list field \
                     holding them; found an object with {} list fields{}",
                    path.display(),
                    lists.len(),
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", names.join(", "))
                    }
                ));
            }
            match lists.pop() {
                Some((_, Value::Array(items))) => items,
                _ => unreachable!("the one field left is a list"),
            }
        }
        other => {
            return Err(format!(
                "{}: expected an array of records, found {}",
                path.display(),
                kind(&other)
            ))
        }
    };
    if let Some((i, bad)) = records.iter().enumerate().find(|(_, r)| !r.is_object()) {
        return Err(format!(
            "{}: record {} is {}, not an object",
            path.display(),
            i + 1,
            kind(bad)
        ));
    }
    Ok(records)
}

fn read_parquet(path: &Path) -> Result<Vec<Value>, String> {
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut records = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| format!("{}: row {}: {e}", path.display(), i + 1))?;
        records.push(row_to_json(&row, true));
    }
    Ok(records)
}

/// A Parquet row as a JSON object. At the top level, the index columns
/// pandas writes (`__index_level_0__`) are left out: they are no record field.
fn row_to_json(row: &Row, top: bool) -> Value {
    let map: Map<String, Value> = row
        .get_column_iter()
        .filter(|(name, _)| !(top && name.starts_with("__index_level_")))
        .map(|(name, field)| (name.clone(), field_to_json(field)))
        .collect();
    Value::Object(map)
}

/// One Parquet value as JSON: numbers as numbers (a float keeps its shortest
/// decimal form, so `0.1f32` stays `0.1`), strings and UTF-8 binaries as
/// strings, lists as arrays, structs and maps as objects; dates and times as
/// their ISO text, non-finite floats as null.
fn field_to_json(field: &Field) -> Value {
    let float = |shortest: String| {
        shortest
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number)
    };
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float16(n) => float(n.to_f32().to_string()),
        Field::Float(n) => float(n.to_string()),
        Field::Double(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::Array(b.data().iter().map(|&x| Value::from(x)).collect()),
        },
        Field::Decimal(_)
        | Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => Value::String(field.to_string()),
        Field::Group(row) => row_to_json(row, false),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_to_json).collect())
        }
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Field::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, field_to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }

    fn arc_parquet() -> PathBuf {
        manifest().join("tests/data/arc_easy.parquet")
    }

    #[test]
    fn jsonl_skips_blank_lines_and_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jsonl");
        write(&good, "{\"a\": 1}\n\n   \n{\"a\": 2}\r\n");
        assert_eq!(
            read_records(&good).unwrap(),
            vec![json!({"a": 1}), json!({"a": 2})]
        );

        let bad = dir.path().join("bad.jsonl");
        write(&bad, "{\"a\": 1}\n\n{\"a\": 2,}\n{\"a\": 3}\n");
        let err = read_records(&bad).unwrap_err();
        assert!(err.contains("bad.jsonl:3:"), "{err}");
        assert!(!err.contains("at line"), "{err}");

        let not_object = dir.path().join("list.jsonl");
        write(&not_object, "{\"a\": 1}\n[1, 2]\n");
        let err = read_records(&not_object).unwrap_err();
        assert!(
            err.contains("list.jsonl:2: expected a JSON object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn json_array_or_an_object_holding_one_list() {
        let dir = tempfile::tempdir().unwrap();
        let array = dir.path().join("a.json");
        write(&array, "[{\"q\": \"x\"}, {\"q\": \"y\"}]");
        assert_eq!(
            read_records(&array).unwrap(),
            vec![json!({"q": "x"}), json!({"q": "y"})]
        );

        let wrapped = dir.path().join("b.json");
        write(&wrapped, "{\"version\": 2, \"data\": [{\"q\": \"x\"}]}");
        assert_eq!(read_records(&wrapped).unwrap(), vec![json!({"q": "x"})]);

        let two = dir.path().join("c.json");
        write(&two, "{\"train\": [], \"test\": []}");
        let err = read_records(&two).unwrap_err();
        assert!(err.contains("2 list fields"), "{err}");

        let scalars = dir.path().join("d.json");
        write(&scalars, "[{\"q\": 1}, 3]");
        let err = read_records(&scalars).unwrap_err();
        assert!(err.contains("record 2 is a number"), "{err}");

        let broken = dir.path().join("e.json");
        write(&broken, "[\n{\"q\": 1},\n{\"q\" 2}\n]");
        let err = read_records(&broken).unwrap_err();
        assert!(err.contains("e.json:3:"), "{err}");
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = read_records(Path::new("records.csv")).unwrap_err();
        assert!(err.contains("records.csv: unknown record format"), "{err}");
        assert!(read_records(Path::new("records")).is_err());
    }

    #[test]
    fn parquet_rows_match_their_jsonl_twin() {
        let from_parquet = read_records(&arc_parquet()).unwrap();
        let mut from_jsonl = read_records(&manifest().join("datasets/arc_easy.jsonl")).unwrap();
        from_jsonl.truncate(8);
        assert_eq!(from_parquet.len(), 8);
        assert_eq!(from_parquet, from_jsonl);
        // ARC's struct of two string lists comes back as an object of arrays.
        let choices = &from_parquet[0]["choices"];
        assert!(choices["text"].is_array() && choices["label"].is_array());
    }

    #[test]
    fn parquet_types_become_plain_json() {
        let records = read_records(&manifest().join("tests/data/types.parquet")).unwrap();
        assert_eq!(
            records,
            vec![
                json!({
                    "ind": 4, "label": "2", "endings": ["a", "b"], "score": 0.1,
                    "weight": 2.5, "flag": true, "note": null, "labels": [1, 0, 0],
                    "nested": {"text": ["x"], "label": ["A"]}
                }),
                json!({
                    "ind": 5, "label": "0", "endings": [], "score": -1.5,
                    "weight": 0.0, "flag": false, "note": "n", "labels": [],
                    "nested": {"text": [], "label": []}
                }),
            ]
        );
    }

    #[test]
    fn locate_prefers_explicit_then_suite_then_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("suite");
        let data = dir.path().join("data");
        let own = dir.path().join("own.jsonl");
        write(&own, "{}\n");
        write(&suite.join("hellaswag.json"), "[]");
        write(&suite.join("hellaswag.parquet"), "");
        write(&data.join("hellaswag.jsonl"), "{}\n");
        write(&data.join("arc_easy.parquet"), "");
        let hub = Some(("Rowan/hellaswag", None, "validation"));
        let find = |task, explicit: Option<&Path>| {
            locate_in(task, explicit, Some(&suite), Some(&data), hub, None)
        };

        assert_eq!(
            find("hellaswag", Some(&own)).unwrap(),
            RecordSource::File(own.clone())
        );
        // Within a folder, JSONL before JSON before Parquet.
        assert_eq!(
            find("hellaswag", None).unwrap(),
            RecordSource::File(suite.join("hellaswag.json"))
        );
        assert_eq!(
            find("arc_easy", None).unwrap(),
            RecordSource::File(data.join("arc_easy.parquet"))
        );
        let missing = dir.path().join("typo.jsonl");
        let err = find("hellaswag", Some(&missing)).unwrap_err();
        assert!(err.contains("typo.jsonl does not exist"), "{err}");
    }

    #[test]
    fn locate_error_lists_every_place() {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("datasets");
        fs::create_dir_all(&suite).unwrap();
        let cache = dir.path().join("hub");
        let hub = Some(("Rowan/hellaswag", None, "validation"));

        let err = locate_in("hellaswag", None, Some(&suite), None, hub, Some(&cache)).unwrap_err();
        assert!(
            err.starts_with("no records for hellaswag; looked at:"),
            "{err}"
        );
        assert!(err.contains("hellaswag.{jsonl,json,parquet}"), "{err}");
        assert!(
            err.contains("data folder (--data-dir or SERVEGATE_DATA_DIR): not set"),
            "{err}"
        );
        assert!(err.contains("datasets--Rowan--hellaswag (absent)"), "{err}");
        assert!(err.contains("Rowan/hellaswag's Parquet files"), "{err}");

        let err = locate_in("faq", None, None, Some(&suite.join("x")), None, None).unwrap_err();
        assert!(err.contains("suite data folder: not set"), "{err}");
        assert!(err.contains("(folder absent)"), "{err}");
        assert!(err.contains("names no Hub dataset"), "{err}");

        let err = locate_in("hellaswag", None, None, None, hub, None).unwrap_err();
        assert!(err.contains("location is unknown"), "{err}");

        // A cached repo without the wanted split says what it looked for.
        let snap = cache.join("datasets--allenai--ai2_arc/snapshots/abc");
        copy(
            &arc_parquet(),
            &snap.join("ARC-Easy/train-00000-of-00001.parquet"),
        );
        let hub = Some(("allenai/ai2_arc", Some("ARC-Easy"), "test"));
        let err = locate_in("arc_easy", None, None, None, hub, Some(&cache)).unwrap_err();
        assert!(err.contains("config ARC-Easy, split test"), "{err}");
        assert!(err.contains("ARC-Easy/test-*.parquet"), "{err}");
        assert!(err.contains("ARC-Easy/test/*.parquet"), "{err}");
    }

    #[test]
    fn locate_finds_the_hub_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let arc = arc_parquet();
        let hub_find = |repo, config, split| {
            locate_in(
                "t",
                None,
                None,
                None,
                Some((repo, config, split)),
                Some(cache),
            )
        };
        let files = |src: RecordSource| match src {
            RecordSource::HubCache { files, .. } => files,
            other => panic!("expected the hub cache, got {other}"),
        };

        // A named config's folder of split files; refs/main picks the snapshot.
        let repo = cache.join("datasets--allenai--ai2_arc");
        let old = repo.join("snapshots/0ld");
        let new = repo.join("snapshots/new");
        copy(&arc, &old.join("ARC-Easy/test-00000-of-00001.parquet"));
        copy(&arc, &new.join("ARC-Easy/test-00000-of-00001.parquet"));
        copy(&arc, &new.join("ARC-Easy/testing-00000-of-00001.parquet"));
        copy(&arc, &new.join("ARC-Challenge/test-00000-of-00001.parquet"));
        write(&repo.join("refs/main"), "new");
        let src = hub_find("allenai/ai2_arc", Some("ARC-Easy"), "test").unwrap();
        assert_eq!(
            src,
            RecordSource::HubCache {
                repo: "allenai/ai2_arc".into(),
                files: vec![new.join("ARC-Easy/test-00000-of-00001.parquet")],
            }
        );
        assert!(src
            .to_string()
            .starts_with("allenai/ai2_arc from the Hugging Face cache ("));
        assert_eq!(read_source(&src).unwrap().len(), 8);

        // mmlu's `all` config, truthfulqa's `multiple_choice`.
        let mmlu = cache.join("datasets--cais--mmlu/snapshots/s");
        copy(&arc, &mmlu.join("all/dev-00000-of-00001.parquet"));
        copy(&arc, &mmlu.join("all/test-00000-of-00001.parquet"));
        let dev = files(hub_find("cais/mmlu", Some("all"), "dev").unwrap());
        assert_eq!(dev, vec![mmlu.join("all/dev-00000-of-00001.parquet")]);
        let tqa = cache.join("datasets--truthful_qa/snapshots/s");
        copy(
            &arc,
            &tqa.join("multiple_choice/validation-00000-of-00001.parquet"),
        );
        assert_eq!(
            files(hub_find("truthful_qa", Some("multiple_choice"), "validation").unwrap()),
            vec![tqa.join("multiple_choice/validation-00000-of-00001.parquet")]
        );

        // No config: data/<split>-*; shards are read in name order.
        let hs = cache.join("datasets--Rowan--hellaswag/snapshots/s");
        copy(&arc, &hs.join("data/validation-00001-of-00002.parquet"));
        copy(&arc, &hs.join("data/validation-00000-of-00002.parquet"));
        copy(&arc, &hs.join("data/train-00000-of-00001.parquet"));
        let src = hub_find("Rowan/hellaswag", None, "validation").unwrap();
        assert_eq!(
            files(src.clone()),
            vec![
                hs.join("data/validation-00000-of-00002.parquet"),
                hs.join("data/validation-00001-of-00002.parquet"),
            ]
        );
        assert!(src.to_string().ends_with("and 1 more shards)"), "{src}");
        assert_eq!(read_source(&src).unwrap().len(), 16);

        // The Parquet conversion: {config or default}/{split}/NNNN.parquet.
        let conv = cache.join("datasets--org--conv/snapshots/s");
        copy(&arc, &conv.join("default/test/0001.parquet"));
        copy(&arc, &conv.join("default/test/0000.parquet"));
        copy(&arc, &conv.join("plain/test/0000.parquet"));
        assert_eq!(
            files(hub_find("org/conv", None, "test").unwrap()),
            vec![
                conv.join("default/test/0000.parquet"),
                conv.join("default/test/0001.parquet"),
            ]
        );
        assert_eq!(
            files(hub_find("org/conv", Some("plain"), "test").unwrap()),
            vec![conv.join("plain/test/0000.parquet")]
        );

        // Suite and data folders come before the cache.
        let folder = dir.path().join("folder");
        write(&folder.join("t.jsonl"), "{}\n");
        let hub = Some(("org/conv", None, "test"));
        assert_eq!(
            locate_in("t", None, None, Some(&folder), hub, Some(cache)).unwrap(),
            RecordSource::File(folder.join("t.jsonl"))
        );
    }

    #[test]
    fn fewshot_records_read_the_task_dev_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("mmlu_dev.jsonl"),
            "{\"q\": 1}\n{\"q\": 2}\n",
        );
        let records = fewshot_records("mmlu", "dev", None, Some(dir.path()), None, None).unwrap();
        assert_eq!(records.len(), 2);
        let records = fewshot_records("mmlu", "dev", None, None, Some(dir.path()), None).unwrap();
        assert_eq!(records.len(), 2);
        let err = fewshot_records("other", "dev", None, Some(dir.path()), None, None).unwrap_err();
        assert!(err.contains("no records for other_dev"), "{err}");
    }

    #[test]
    fn shipped_datasets_all_read() {
        let dir = manifest().join("datasets");
        for task in [
            "hellaswag",
            "arc_easy",
            "arc_challenge",
            "truthfulqa_mc2",
            "mmlu",
            "mmlu_dev",
            "faq",
        ] {
            let src = locate(task, None, None, Some(&dir), None).unwrap();
            assert_eq!(src, RecordSource::File(dir.join(format!("{task}.jsonl"))));
            let records = read_source(&src).unwrap();
            assert!(records.len() >= 15, "{task}: {} records", records.len());
        }
    }

    #[test]
    fn cached_tokenizer_by_ref_or_any_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(cached_tokenizer_in(root, "org/model"), None);

        let repo = root.join("models--org--model");
        write(&repo.join("snapshots/aaa/config.json"), "{}");
        write(&repo.join("snapshots/bbb/tokenizer.json"), "{}");
        assert_eq!(
            cached_tokenizer_in(root, "org/model"),
            Some(repo.join("snapshots/bbb/tokenizer.json"))
        );
        write(&repo.join("snapshots/ccc/tokenizer.json"), "{}");
        write(&repo.join("refs/main"), "ccc");
        assert_eq!(
            cached_tokenizer_in(root, "org/model"),
            Some(repo.join("snapshots/ccc/tokenizer.json"))
        );
        assert_eq!(cached_tokenizer_in(root, "org/other"), None);
    }
}
