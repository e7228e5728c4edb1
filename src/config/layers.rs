//! A target table in a higher layer replaces the kind of server a lower
//! layer gave it.
//!
//! figment merges tables key by key, so a case file's `command` over the
//! project's `sim` would leave both set (a conflict). Before the layers are
//! merged, each lower layer loses the keys that describe a kind of server a
//! higher layer replaced: the kind key itself (`url`, `command`, `sim`),
//! `command`'s process settings, and `exclusive`, whose default depends on
//! the kind. Keys about talking to the server (`model`, `api_key_env`,
//! `ready`, `ready_timeout_s`) carry over. Two layers of the same kind still
//! merge key by key (`sim = { slowdown = 1.1 }` over `sim = { profile = "engine" }`).

use std::collections::BTreeSet;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Keys that make a target one kind of server.
const KINDS: [&str; 3] = ["url", "command", "sim"];

/// Keys that belong to a `command` target only.
const COMMAND_KEYS: [&str; 6] = ["shell", "build", "env", "cwd", "port", "stop_timeout_s"];

/// One configuration file's values, possibly pruned, under its own metadata
/// so that errors still name the file and line.
pub(super) struct FileLayer {
    pub metadata: Metadata,
    pub dict: Dict,
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Prunes `layers` (lowest first) so that every target takes its kind from
/// the highest layer that names one; each layer replaces what lies below it.
pub(super) fn replace_target_kinds(layers: &mut [&mut Dict]) {
    for upper in 1..layers.len() {
        let (lower, rest) = layers.split_at_mut(upper);
        for (name, kinds) in target_kinds(rest[0]) {
            for layer in lower.iter_mut() {
                if let Some(table) = target_table(layer, &name) {
                    drop_other_kind(table, &kinds);
                }
            }
        }
    }
}

/// The kind keys each target table of one layer writes.
fn target_kinds(layer: &Dict) -> Vec<(String, BTreeSet<&'static str>)> {
    let Some(Value::Dict(_, targets)) = layer.get("targets") else {
        return Vec::new();
    };
    targets
        .iter()
        .filter_map(|(name, table)| {
            let Value::Dict(_, table) = table else {
                return None;
            };
            let kinds: BTreeSet<&'static str> = KINDS
                .into_iter()
                .filter(|k| table.contains_key(*k))
                .collect();
            (!kinds.is_empty()).then(|| (name.clone(), kinds))
        })
        .collect()
}

fn target_table<'a>(layer: &'a mut Dict, name: &str) -> Option<&'a mut Dict> {
    match layer.get_mut("targets")? {
        Value::Dict(_, targets) => match targets.get_mut(name)? {
            Value::Dict(_, table) => Some(table),
            _ => None,
        },
        _ => None,
    }
}

/// Removes a lower table's server description when it is of a kind the
/// upper layer does not write; a table of the same kind is left to merge.
fn drop_other_kind(table: &mut Dict, upper: &BTreeSet<&'static str>) {
    let replaced = KINDS
        .iter()
        .any(|k| table.contains_key(*k) && !upper.contains(k));
    if !replaced {
        return;
    }
    table.retain(|key, _| {
        let kind = KINDS.contains(&key.as_str());
        let command_only = COMMAND_KEYS.contains(&key.as_str()) && !upper.contains("command");
        !((kind && !upper.contains(key.as_str())) || command_only || key == "exclusive")
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(toml: &str) -> Dict {
        let value: toml::Value = toml.parse::<toml::Table>().unwrap().into();
        match Value::serialize(value).unwrap() {
            Value::Dict(_, d) => d,
            _ => unreachable!(),
        }
    }

    fn keys(layer: &Dict, target: &str) -> Vec<String> {
        let mut layer = layer.clone();
        target_table(&mut layer, target)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_upper_kind_drops_the_lower_kind_and_its_keys() {
        let mut project = dict(
            "[targets.c]\ncommand = [\"x\"]\nbuild = [\"b\"]\nport = 9\nexclusive = true\nmodel = \"m\"\nready = \"/health\"\n\
             [targets.other]\nsim = {}\n",
        );
        let mut case = dict("[targets.c]\nurl = \"http://h\"\n");
        replace_target_kinds(&mut [&mut project, &mut case]);
        assert_eq!(keys(&project, "c"), vec!["model", "ready"]);
        // Targets the upper layer does not name are untouched.
        assert_eq!(keys(&project, "other"), vec!["sim"]);
    }

    #[test]
    fn the_same_kind_merges_and_the_nearest_upper_layer_decides() {
        let mut project = dict("[targets.c]\nsim = { profile = \"engine\" }\nexclusive = false\n");
        let mut case = dict("[targets.c]\nsim = { slowdown = 1.1 }\n");
        replace_target_kinds(&mut [&mut project, &mut case]);
        assert_eq!(keys(&project, "c"), vec!["exclusive", "sim"]);

        // project command + build, case url, environment command: the case
        // replaced the project's command, so its build is gone too.
        let mut project = dict("[targets.c]\ncommand = [\"x\"]\nbuild = [\"b\"]\n");
        let mut case = dict("[targets.c]\nurl = \"http://h\"\n");
        let mut env = dict("[targets.c]\ncommand = [\"y\"]\n");
        replace_target_kinds(&mut [&mut project, &mut case, &mut env]);
        assert!(keys(&project, "c").is_empty());
        assert!(keys(&case, "c").is_empty());
    }

    #[test]
    fn a_lower_table_without_a_kind_keeps_its_keys() {
        let mut project = dict("[targets.c]\nbuild = [\"b\"]\nenv = { A = \"1\" }\n");
        let mut case = dict("[targets.c]\ncommand = [\"x\", \"{port}\"]\n");
        replace_target_kinds(&mut [&mut project, &mut case]);
        assert_eq!(keys(&project, "c"), vec!["build", "env"]);
    }
}
