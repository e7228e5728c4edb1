//! `up`, `down` and `__supervise`: servers left running between runs.

use servegate::config::CaseConfig;
use servegate::discover::Project;
use servegate::server::{shared, TargetEnv};

use super::CliError;

/// The project's settings and where its targets write.
fn project_config(project: &Project) -> Result<(CaseConfig, TargetEnv), CliError> {
    let c = servegate::config::load_project(&project.root, &project.env)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let env = TargetEnv::new(&project.root, &c.results_dir);
    Ok((c, env))
}

pub(super) fn up(project: &Project, names: &[String], idle_timeout: f64) -> Result<(), CliError> {
    // 0 means never; anything else must be a duration a timer can hold.
    if idle_timeout != 0.0 {
        use servegate::config::limits::{number, TIMEOUT_S};
        if let Err(e) = number(idle_timeout, TIMEOUT_S) {
            return Err(CliError::Usage(format!(
                "--idle-timeout: {e} (or 0: never)"
            )));
        }
    }
    let (config, env) = project_config(project)?;
    let names: Vec<String> = if names.is_empty() {
        let mut names = vec![config.candidate.clone()];
        names.extend(config.baseline.target().map(str::to_string));
        names.dedup();
        names
            .into_iter()
            .filter(|n| config.targets.get(n).is_some_and(|t| t.command.is_some()))
            .collect()
    } else {
        names.to_vec()
    };
    let mut targets = Vec::new();
    for name in &names {
        match config.targets.get(name) {
            Some(spec) if spec.command.is_some() => targets.push((name.clone(), spec.clone())),
            Some(_) => {
                return Err(CliError::Usage(format!(
                    "`{name}` is not a `command` target; only those can be started"
                )));
            }
            None => {
                return Err(CliError::Usage(format!(
                    "no target named `{name}` in servegate.toml"
                )));
            }
        }
    }
    if targets.is_empty() {
        eprintln!("nothing to start: neither candidate nor baseline is a `command` target");
        return Ok(());
    }
    if targets.iter().filter(|(_, t)| t.is_exclusive()).count() > 1 {
        eprintln!(
            "warning: {} are exclusive targets and will now run side by side",
            targets
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find the servegate binary: {e}")))?;
    let idle = (idle_timeout > 0.0).then(|| std::time::Duration::from_secs_f64(idle_timeout));
    let ups = shared::up(&exe, &project.root, &env, &targets, &config.model, idle)
        .map_err(|e| CliError::Failed(format!("{e:#}")))?;
    for u in ups {
        println!("{} {}", u.target, u.url);
        if u.already_running {
            eprintln!("`{}` was already up", u.target);
        }
    }
    Ok(())
}

pub(super) fn down(project: &Project, names: &[String]) -> Result<(), CliError> {
    let (_, env) = project_config(project)?;
    let stopped = shared::down(&env, names).map_err(|e| CliError::Failed(format!("{e:#}")))?;
    for name in stopped {
        println!("stopped {name}");
    }
    Ok(())
}

pub(super) fn supervise(
    project: &Project,
    name: &str,
    idle_timeout: Option<f64>,
) -> Result<(), CliError> {
    let (config, env) = project_config(project)?;
    let Some(spec) = config.targets.get(name) else {
        return Err(CliError::Usage(format!("no target named `{name}`")));
    };
    let model = spec.model.clone().unwrap_or(config.model.clone());
    // `up` checked the value; a bad one from elsewhere means no idle stop.
    let idle = idle_timeout.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
    match shared::supervise(&env, name, spec, &model, idle) as u8 {
        0 => Ok(()),
        code => Err(CliError::Status(code)),
    }
}
