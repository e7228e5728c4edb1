//! Reads a target's Prometheus `/metrics` on an interval while a phase's
//! measured requests run (from the end of the warm-up to the last
//! request), so the series and the figures describe the measured load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::client::Client;
use crate::loadgen::PhaseStart;
use crate::server_metrics::{self, ServerSeries};

/// A scrape loop running beside a phase.
pub struct Scraper {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ServerSeries>,
}

impl Scraper {
    /// Starts scraping `names` from `client`'s `/metrics` every `interval`
    /// once `measuring` begins (which waits for the first scrape).
    pub fn start(
        client: Client,
        names: Vec<String>,
        interval: Duration,
        measuring: Arc<PhaseStart>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(scrape_loop(client, names, interval, measuring, stopped));
        Self { stop, task }
    }

    /// Takes a last scrape and returns the series.
    pub async fn finish(self) -> ServerSeries {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn scrape_loop(
    client: Client,
    names: Vec<String>,
    interval: Duration,
    measuring: Arc<PhaseStart>,
    mut stopped: oneshot::Receiver<()>,
) -> ServerSeries {
    let mut series = ServerSeries::default();
    tokio::select! {
        _ = measuring.began() => {}
        _ = &mut stopped => return series,
    }
    let started = Instant::now();
    // A scrape may take at most the interval (a second at least), so a
    // stalled endpoint cannot hold the phase's end.
    let timeout = interval.max(Duration::from_secs(1));
    let mut next = tokio::time::Instant::now();
    loop {
        let at = started.elapsed().as_secs_f64();
        match client.ask("metrics", None, timeout).await {
            Ok((200..=299, text)) => match server_metrics::parse(&text, &names) {
                Ok(read) => series.push(at, &read),
                Err(e) => note_failure(&mut series, e),
            },
            Ok((status, message)) => note_failure(&mut series, format!("HTTP {status}: {message}")),
            Err(e) => note_failure(&mut series, e),
        }
        // The first sample is the counters' starting point: measured
        // requests wait for it.
        measuring.watcher_ready();
        next += interval;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = &mut stopped => break,
        }
    }
    // The last scrape closes the counters' window at the phase's end.
    let at = started.elapsed().as_secs_f64();
    if let Ok((200..=299, text)) = client.ask("metrics", None, timeout).await {
        if let Ok(read) = server_metrics::parse(&text, &names) {
            series.push(at, &read);
        }
    }
    series
}

fn note_failure(series: &mut ServerSeries, error: String) {
    series.failed += 1;
    series.last_error = Some(error);
}
