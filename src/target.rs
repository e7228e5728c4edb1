//! Getting a server to talk to: an already running `url`, or the embedded `sim` engine.

use std::time::Duration;

use crate::client::Client;
use crate::config::TargetSpec;
use crate::sim::SimServer;

/// A server ready for requests. Anything it started stops when it is dropped.
pub struct RunningTarget {
    pub name: String,
    pub url: String,
    pub model: String,
    pub client: Client,
    _sim: Option<SimServer>,
}

impl RunningTarget {
    /// Starts (or reaches) the target and waits until it is ready.
    pub async fn start(name: &str, spec: &TargetSpec, project_model: &str) -> anyhow::Result<Self> {
        let model = spec
            .model
            .clone()
            .unwrap_or_else(|| project_model.to_string());
        let api_key = match &spec.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "target `{name}`: environment variable {var} (api_key_env) is not set"
                )
            })?),
            None => None,
        };
        let (url, sim) = match (&spec.url, &spec.sim) {
            (Some(url), _) => (url.clone(), None),
            (None, Some(sim)) => {
                let server = SimServer::start_local(sim, &model).map_err(|e| {
                    anyhow::anyhow!("target `{name}`: cannot start embedded engine: {e}")
                })?;
                (server.url(), Some(server))
            }
            (None, None) => anyhow::bail!("target `{name}` has neither `url` nor `sim`"),
        };
        let client = Client::new(&url, api_key)?;
        client
            .wait_ready(&spec.ready, Duration::from_secs_f64(spec.ready_timeout_s))
            .await
            .map_err(|e| anyhow::anyhow!("target `{name}` not ready: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            url,
            model,
            client,
            _sim: sim,
        })
    }
}
