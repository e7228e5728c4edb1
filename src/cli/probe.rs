//! `probe`: what a server supports, as a table or JSON.

use std::time::Duration;

use servegate::client::Client;
use servegate::probe::{self, Support};
use servegate::report::console::table;

use super::{runtime, CliError};

#[derive(clap::Args)]
pub(super) struct ProbeArgs {
    /// The server, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine).
    url: String,
    /// The model the requests name (default: the first the server lists).
    #[arg(long)]
    model: Option<String>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds each request may take, answer included.
    #[arg(long, default_value_t = 10.0, value_parser = parse_timeout)]
    timeout: f64,
    /// Environment variable holding the API key (sent as a bearer token).
    #[arg(long)]
    api_key_env: Option<String>,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.001..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "a number of seconds between 0.001 and 3600 (got {text})"
        )),
    }
}

/// Exit 1 when the server can generate neither way: nothing could be gated on it.
pub(super) fn probe(args: &ProbeArgs) -> Result<(), CliError> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| CliError::Usage(format!("environment variable {var} is not set")))?,
        ),
        None => None,
    };
    let base = args.url.trim_end_matches('/').trim_end_matches("/v1");
    let client = Client::new(base, api_key).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let report = runtime().block_on(probe::probe(
        &client,
        args.model.as_deref(),
        Duration::from_secs_f64(args.timeout),
    ));
    // Nothing answered and no model was named: a table of question marks
    // would say less than the reason.
    if report.models.is_empty() && args.model.is_none() && !report.can_generate() {
        let why = report
            .findings
            .first()
            .map(|f| f.detail.clone())
            .unwrap_or_default();
        return Err(CliError::Failed(format!(
            "cannot ask {}: {why}",
            report.url
        )));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        println!(
            "{}: model {}",
            report.url,
            report.model.as_deref().unwrap_or("(none)")
        );
        let mut t = table(&["feature", "supported", "seen"]);
        for f in &report.findings {
            t.add_row(vec![
                f.feature.to_string(),
                f.support.to_string(),
                f.detail.clone(),
            ]);
        }
        if let Some(col) = t.column_mut(2) {
            col.set_cell_alignment(comfy_table::CellAlignment::Left);
        }
        println!("{t}");
    }
    if let Some(w) = &report.warning {
        eprintln!("warning: {w}");
    }
    if report.can_generate() {
        Ok(())
    } else {
        let why = report
            .findings
            .iter()
            .find(|f| f.feature == probe::COMPLETIONS && f.support != Support::Yes)
            .map(|f| f.detail.clone())
            .unwrap_or_default();
        Err(CliError::Failed(format!(
            "{}: neither /v1/completions nor /v1/chat/completions answered ({why})",
            report.url
        )))
    }
}
