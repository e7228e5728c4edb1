//! Hostile servers: `servegate bench` (and `run`) against loopback servers
//! that send invalid JSON, endless or trickling streams, huge bodies, HTML,
//! broken connections, bytes that are not UTF-8, or headers and then nothing.
//! Each run must end within its timeouts, exit 1 with the reason, count its
//! errors right and keep its memory bounded. Every server thread stops when
//! its test ends.
//!
//! Each case prints one line (`hostile: name, wall, peak RSS, outcome`) for
//! the README's table:
//! `cargo nextest run -E 'binary(it) & test(/^hostile::/)' --no-capture`.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::BIN;

/// One request as a hostile server sees it.
struct Request {
    path: String,
    head: String,
    body: String,
    /// 0 for the first request this server received.
    number: usize,
}

type Handler = dyn Fn(&Request, &mut TcpStream, &AtomicBool) + Send + Sync;

/// A loopback HTTP server whose every answer is written by hand. Dropping it
/// stops the accept loop and joins every connection thread; handlers check
/// `stop` at least once a second.
struct Hostile {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(
        handler: impl Fn(&Request, &mut TcpStream, &AtomicBool) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let count = AtomicUsize::new(0);
                let mut connections = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let number = count.fetch_add(1, Ordering::Relaxed);
                            let (stop, handler) = (stop.clone(), handler.clone());
                            connections.push(std::thread::spawn(move || {
                                serve(sock, number, &*handler, &stop)
                            }));
                        }
                        Err(e) if e.kind() == IoKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break,
                    }
                }
                for c in connections {
                    let _ = c.join();
                }
            })
        };
        Self {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Reads one request (head and Content-Length body), then hands the socket over.
fn serve(mut sock: TcpStream, number: usize, handler: &Handler, stop: &AtomicBool) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = sock.set_write_timeout(Some(Duration::from_millis(200)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => continue,
            Err(_) => return,
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                break (text[..end].to_string(), text[end + 4..].to_string());
            }
        }
    };
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    handler(
        &Request {
            path,
            head,
            body,
            number,
        },
        &mut sock,
        stop,
    );
}

/// Writes all of `bytes` unless the client went away or the test is over.
fn send(sock: &mut TcpStream, bytes: &[u8], stop: &AtomicBool) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match sock.write(rest) {
            Ok(0) => return false,
            Ok(n) => rest = &rest[n..],
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Sleeps until the test is over (a server that says nothing more).
fn idle(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn head(status: &str, content_type: &str, extra: &str) -> String {
    format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nconnection: close\r\n{extra}\r\n")
}

fn respond(sock: &mut TcpStream, stop: &AtomicBool, status: &str, content_type: &str, body: &[u8]) {
    let h = head(
        status,
        content_type,
        &format!("content-length: {}\r\n", body.len()),
    );
    let _ = send(sock, h.as_bytes(), stop) && send(sock, body, stop);
}

fn models(sock: &mut TcpStream, stop: &AtomicBool) {
    let body = br#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
    respond(sock, stop, "200 OK", "application/json", body);
}

/// A server whose `/v1/models` is sound and whose completions are `answer`.
fn completions(
    answer: impl Fn(&Request, &mut TcpStream, &AtomicBool) + Send + Sync + 'static,
) -> Hostile {
    Hostile::start(move |req, sock, stop| {
        if req.path.ends_with("/v1/models") {
            models(sock, stop)
        } else {
            answer(req, sock, stop)
        }
    })
}

fn sse_head() -> String {
    head("200 OK", "text/event-stream", "")
}

const EVENT: &str = "data: {\"choices\":[{\"index\":0,\"text\":\"x\"}]}\n\n";

/// How one `servegate` run went.
struct Run {
    code: Option<i32>,
    wall: Duration,
    peak_rss_mb: f64,
    stdout: String,
    stderr: String,
    /// The `--output` file, when it was written.
    json: Option<Value>,
}

impl Run {
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The one-line figure for the README table.
    fn report(&self, name: &str, outcome: &str) {
        let line = format!(
            "hostile: {name:<26} wall {:>5.1} s  peak RSS {:>6.1} MB  exit {}  {outcome}",
            self.wall.as_secs_f64(),
            self.peak_rss_mb,
            self.code.map_or("signal".into(), |c| c.to_string()),
        );
        println!("{line}");
    }

    fn errors_by_kind(&self) -> Value {
        self.json.as_ref().expect("bench wrote its output")["scenarios"][0]["errors_by_kind"]
            .clone()
    }
}

/// Runs the binary to its end (killed after `limit`), measuring its wall
/// time and its own peak resident memory (`wait4`'s rusage is that child's).
// The child is reaped by `wait4`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_servegate(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, Duration, f64, String, String) {
    let started = Instant::now();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("SERVEGATE_NO_PROGRESS", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("SERVEGATE_REQUEST_TIMEOUT")
        .env_remove("SERVEGATE_SCORING_TIMEOUT")
        .env_remove("SERVEGATE_CONCURRENCY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if !killed && started.elapsed() > limit {
            // A hang is the failure this file looks for: end it, then report it.
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        !killed,
        "servegate {args:?} still ran after {limit:?}\n{stdout}\n{stderr}"
    );
    // ru_maxrss is in kilobytes on Linux.
    (code, wall, usage.ru_maxrss as f64 / 1024.0, stdout, stderr)
}

/// `servegate bench` with one small point against `url`.
fn bench(url: &str, concurrency: u32, request_timeout_s: f64, limit: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.json");
    std::fs::write(&prompts, r#"{"short": ["hello there", "a second prompt"]}"#).unwrap();
    let output = dir.path().join("out.json");
    let (c, t) = (concurrency.to_string(), request_timeout_s.to_string());
    let args = [
        "bench",
        "--base-url",
        url,
        "--prompts-file",
        prompts.to_str().unwrap(),
        "--prompt-length",
        "short",
        "--max-tokens",
        "8",
        "--concurrency",
        &c,
        "--warmup",
        "0",
        "--num-requests",
        "2",
        "--request-timeout",
        &t,
        "--output",
        output.to_str().unwrap(),
    ];
    let (code, wall, peak_rss_mb, stdout, stderr) = run_servegate(&args, &[], limit);
    let json = std::fs::read_to_string(&output)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    Run {
        code,
        wall,
        peak_rss_mb,
        stdout,
        stderr,
        json,
    }
}

/// Both requests of the point failed with `kind`, quoting `needle`; exit 1.
fn assert_failed(run: &Run, kind: &str, needle: &str) {
    let text = run.text();
    assert_eq!(run.code, Some(1), "{text}");
    assert_eq!(
        run.errors_by_kind(),
        serde_json::json!({ kind: 2 }),
        "{text}"
    );
    assert!(run.stdout.contains("2 failed requests"), "{text}");
    assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    assert!(
        run.stderr.contains("no request completed at 1 of 1 points"),
        "{text}"
    );
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn invalid_json_events_fail_their_requests() {
    let server = completions(|_, sock, stop| {
        let body = format!(
            "{}{EVENT}data: {{\"choices\": [{{\"text\": oops}}\n\ndata: [DONE]\n\n",
            sse_head()
        );
        send(sock, body.as_bytes(), stop);
    });
    let run = bench(&server.url(), 2, 5.0, secs(30.0));
    run.report("invalid JSON event", "2 × stream: malformed event");
    assert_failed(&run, "stream", "malformed event");
    assert!(run.wall < secs(5.0), "{:?}", run.wall);
}

#[test]
fn an_endless_stream_fails_at_the_response_limit() {
    // Valid events forever, as fast as the client reads them.
    let server = completions(|_, sock, stop| {
        let event = format!(
            "data: {{\"choices\":[{{\"text\":\"{}\"}}]}}\n\n",
            "y".repeat(4000)
        );
        let burst = event.repeat(16);
        if send(sock, sse_head().as_bytes(), stop) {
            while send(sock, burst.as_bytes(), stop) {}
        }
    });
    let run = bench(&server.url(), 1, 60.0, secs(90.0));
    run.report("endless stream", "2 × stream: response larger than 64 MB");
    assert_failed(&run, "stream", "response larger than 64 MB");
    assert!(run.peak_rss_mb < 300.0, "peak RSS {} MB", run.peak_rss_mb);
}

#[test]
fn a_stream_trickling_one_byte_a_second_times_out_as_a_whole() {
    // Every byte arrives well within any read timeout; only a limit on the
    // whole request ends it.
    let server = completions(|_, sock, stop| {
        if !send(sock, sse_head().as_bytes(), stop) {
            return;
        }
        for b in EVENT.repeat(100).as_bytes() {
            if !send(sock, &[*b], stop) {
                return;
            }
            let next = Instant::now() + secs(1.0);
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let run = bench(&server.url(), 2, 2.5, secs(30.0));
    run.report("one byte a second", "2 × timeout after 2.5 s");
    assert_failed(&run, "timeout", "timed out after 2.5 s");
    // Both requests ran side by side: one timeout, not two, not forever.
    assert!(
        run.wall >= secs(2.5) && run.wall < secs(6.0),
        "{:?}",
        run.wall
    );
}

#[test]
fn a_100_mb_body_fails_without_holding_it() {
    // One JSON object of 100 MB with no line end and no declared length.
    let server = completions(|_, sock, stop| {
        let h = head("200 OK", "application/json", "");
        if !send(sock, h.as_bytes(), stop) || !send(sock, b"{\"choices\":[{\"text\":\"", stop) {
            return;
        }
        let piece = vec![b'z'; 1 << 20];
        for _ in 0..100 {
            if !send(sock, &piece, stop) {
                return;
            }
        }
        send(sock, b"\"}]}\n\n", stop);
    });
    let run = bench(&server.url(), 1, 60.0, secs(90.0));
    run.report(
        "100 MB body, one line",
        "2 × stream: response larger than 64 MB",
    );
    assert_failed(&run, "stream", "response larger than 64 MB");
    assert!(run.peak_rss_mb < 300.0, "peak RSS {} MB", run.peak_rss_mb);
}

#[test]
fn an_html_page_is_not_a_ready_server() {
    let server = Hostile::start(|_, sock, stop| {
        let page = b"<!DOCTYPE html><html><body>It works!</body></html>";
        respond(sock, stop, "200 OK", "text/html", page);
    });
    let run = bench(&server.url(), 2, 2.0, secs(30.0));
    run.report("HTML 200 on /v1/models", "not ready: not a JSON model list");
    let text = run.text();
    assert_eq!(run.code, Some(1), "{text}");
    assert!(
        run.stderr
            .contains("answered 200 but not a JSON model list: <!DOCTYPE html><html>"),
        "{text}"
    );
    assert!(run.json.is_none(), "nothing was measured");
    // bench waits 10 s for readiness, then says why it gave up.
    assert!(
        run.wall >= secs(10.0) && run.wall < secs(15.0),
        "{:?}",
        run.wall
    );
}

#[test]
fn an_html_page_for_a_completion_is_quoted() {
    let server = completions(|_, sock, stop| {
        let page = b"<html><body>502 Bad Gateway</body></html>";
        respond(sock, stop, "200 OK", "text/html", page);
    });
    let run = bench(&server.url(), 2, 5.0, secs(30.0));
    run.report(
        "HTML 200 on completions",
        "2 × stream: no [DONE], body quoted",
    );
    assert_failed(
        &run,
        "stream",
        "stream ended without [DONE] after 0 events; the body began: <html><body>502 Bad Gateway",
    );
    assert!(run.wall < secs(5.0), "{:?}", run.wall);
}

#[test]
fn a_connection_closed_mid_chunk_fails_as_a_connection_error() {
    let server = completions(|_, sock, stop| {
        let h = head(
            "200 OK",
            "text/event-stream",
            "transfer-encoding: chunked\r\n",
        );
        let first = format!("{:x}\r\n{EVENT}\r\n", EVENT.len());
        // A chunk announced as 0x40 bytes, cut after 9 of them.
        let body = format!("{h}{first}40\r\ndata: {{\"c");
        send(sock, body.as_bytes(), stop);
        let _ = sock.shutdown(std::net::Shutdown::Both);
    });
    let run = bench(&server.url(), 2, 5.0, secs(30.0));
    run.report(
        "closed mid-chunk",
        "2 × connection: stream broke after 1 events",
    );
    assert_failed(&run, "connection", "stream broke after 1 events");
    assert!(run.wall < secs(5.0), "{:?}", run.wall);
}

#[test]
fn data_lines_that_are_not_utf8_fail_their_requests() {
    let server = completions(|_, sock, stop| {
        let mut body = sse_head().into_bytes();
        body.extend_from_slice(EVENT.as_bytes());
        body.extend_from_slice(b"data: \xff\xfe\x80{\"choices\":[]}\xc3\n\ndata: [DONE]\n\n");
        send(sock, &body, stop);
    });
    let run = bench(&server.url(), 2, 5.0, secs(30.0));
    run.report("non-UTF-8 data line", "2 × stream: malformed event");
    assert_failed(&run, "stream", "malformed event");
    assert!(run.wall < secs(5.0), "{:?}", run.wall);
}

#[test]
fn models_headers_then_silence_is_not_ready() {
    let server = Hostile::start(|_, sock, stop| {
        let h = head("200 OK", "application/json", "content-length: 100\r\n");
        if send(sock, h.as_bytes(), stop) {
            idle(stop);
        }
    });
    let run = bench(&server.url(), 2, 2.0, secs(30.0));
    run.report(
        "/v1/models headers, silence",
        "not ready: no complete answer",
    );
    let text = run.text();
    assert_eq!(run.code, Some(1), "{text}");
    assert!(
        run.stderr.contains("not ready within 10.0 s")
            && run.stderr.contains("(last: no complete answer within"),
        "{text}"
    );
    assert!(
        run.wall >= secs(10.0) && run.wall < secs(15.0),
        "{:?}",
        run.wall
    );
}

#[test]
fn the_model_lookup_times_out_after_a_ready_probe() {
    // Ready to the probe, then the model lookup gets headers and nothing:
    // it used to wait forever.
    let server = Hostile::start(|req, sock, stop| {
        if req.number == 0 {
            return models(sock, stop);
        }
        let h = head("200 OK", "application/json", "content-length: 100\r\n");
        if send(sock, h.as_bytes(), stop) {
            idle(stop);
        }
    });
    let run = bench(&server.url(), 2, 2.0, secs(30.0));
    run.report("model lookup stalls", "GET /v1/models: no complete answer");
    let text = run.text();
    assert_eq!(run.code, Some(1), "{text}");
    assert!(
        run.stderr
            .contains("GET /v1/models: no complete answer within 2.0 s"),
        "{text}"
    );
    assert!(
        run.wall >= secs(2.0) && run.wall < secs(6.0),
        "{:?}",
        run.wall
    );
}

#[test]
fn eval_times_out_on_a_stalled_model_lookup() {
    let server = Hostile::start(|_, sock, stop| {
        let h = head("200 OK", "application/json", "content-length: 100\r\n");
        if send(sock, h.as_bytes(), stop) {
            idle(stop);
        }
    });
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (data, tokenizer) = (
        repo.join("datasets"),
        repo.join("src/sim/data/tokenizer.json"),
    );
    let url = server.url();
    let args = [
        "eval",
        "--url",
        &url,
        "--tasks",
        "arc_easy",
        "--limit",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
    ];
    // The variable, not the flag: both reach the scoring options.
    let (code, wall, rss, stdout, stderr) =
        run_servegate(&args, &[("SERVEGATE_SCORING_TIMEOUT", "1.5")], secs(30.0));
    let run = Run {
        code,
        wall,
        peak_rss_mb: rss,
        stdout,
        stderr,
        json: None,
    };
    run.report(
        "eval: model lookup stalls",
        "GET /v1/models: no complete answer",
    );
    let text = run.text();
    assert_eq!(run.code, Some(1), "{text}");
    assert!(
        run.stderr
            .contains("GET /v1/models: no complete answer within 1.5 s"),
        "{text}"
    );
    assert!(run.wall < secs(5.0), "{:?}", run.wall);
}

#[test]
fn completion_headers_then_silence_time_out() {
    let server = completions(|_, sock, stop| {
        if send(sock, sse_head().as_bytes(), stop) {
            idle(stop);
        }
    });
    let run = bench(&server.url(), 2, 2.0, secs(30.0));
    run.report("completion headers, silence", "2 × timeout after 2.0 s");
    assert_failed(&run, "timeout", "timed out after 2.0 s");
    assert!(
        run.wall >= secs(2.0) && run.wall < secs(6.0),
        "{:?}",
        run.wall
    );
}

#[test]
fn impossible_usage_fails_the_request() {
    // 2^64 − 1 completion tokens for max_tokens = 8: it used to wrap the totals.
    let server = completions(|_, sock, stop| {
        let usage = format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{}}}}}\n\n",
            u64::MAX
        );
        let body = format!("{}{EVENT}{usage}data: [DONE]\n\n", sse_head());
        send(sock, body.as_bytes(), stop);
    });
    let run = bench(&server.url(), 2, 5.0, secs(30.0));
    run.report("usage 2^64-1 tokens", "2 × stream: more than max_tokens");
    assert_failed(
        &run,
        "stream",
        "usage reports 18446744073709551615 completion tokens, more than max_tokens = 8",
    );
}

/// Every file under `dir`, as text.
fn all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

#[test]
fn an_api_key_quoted_by_the_server_is_redacted_everywhere() {
    const KEY: &str = "sk-hostile-3f9a7c21d4e8b6a0";
    /// The Authorization header the client sent, as the server saw it.
    fn authorization(req: &Request) -> String {
        req.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or("no authorization")
            .to_string()
    }
    // The candidate answers 401 and 500 in turn, quoting the header.
    let candidate = completions(|req, sock, stop| {
        let auth = authorization(req);
        if req.number % 2 == 0 {
            let body =
                serde_json::json!({"error": {"message": format!("invalid key in `{auth}`")}});
            respond(
                sock,
                stop,
                "401 Unauthorized",
                "application/json",
                body.to_string().as_bytes(),
            );
        } else {
            let body = format!("upstream failed for {auth}");
            respond(
                sock,
                stop,
                "500 Internal Server Error",
                "text/plain",
                body.as_bytes(),
            );
        }
    });
    // The baseline quotes it in an error event and in a malformed one.
    let baseline = completions(|req, sock, stop| {
        let auth = authorization(req);
        let event = if req.number % 2 == 0 {
            serde_json::json!({"error": {"message": format!("revoked: {auth}")}}).to_string()
        } else {
            format!("{{not json {auth}")
        };
        let body = format!("{}data: {event}\n\n", sse_head());
        send(sock, body.as_bytes(), stop);
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        format!(
            "model = \"m\"\n\
             [targets.candidate]\nurl = \"{}\"\napi_key_env = \"SG_HOSTILE_KEY\"\n\
             [targets.baseline]\nurl = \"{}\"\napi_key_env = \"SG_HOSTILE_KEY\"\n\
             [workload]\nmax_tokens = 8\nconcurrency = 2\nnum_requests = 4\nwarmup = 0\nrequest_timeout_s = 5.0\n",
            candidate.url(),
            baseline.url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("prompts")).unwrap();
    std::fs::write(
        root.join("prompts/short.txt"),
        "hello there\nanother prompt\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("scenarios")).unwrap();
    std::fs::write(
        root.join("scenarios/hostile.toml"),
        "[workload]\nprompts = \"short\"\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let (code, wall, rss, stdout, stderr) = run_servegate(
        &["--root", root.to_str().unwrap(), "run", "--save-detailed"],
        &[("SG_HOSTILE_KEY", KEY)],
        secs(60.0),
    );
    let outcome = format!("{stdout}\n{stderr}");
    let run = Run {
        code,
        wall,
        peak_rss_mb: rss,
        stdout,
        stderr,
        json: None,
    };
    run.report(
        "key echoed in 401/500/stream",
        "failed, key redacted everywhere",
    );
    assert_eq!(code, Some(1), "{outcome}");
    assert!(
        !outcome.contains(KEY),
        "the key reached the console:\n{outcome}"
    );
    assert!(outcome.contains("[redacted]"), "{outcome}");
    let files = all_files(&root.join("results"));
    let written: Vec<&PathBuf> = files.iter().map(|(p, _)| p).collect();
    let json = files
        .iter()
        .find(|(p, _)| {
            p.extension().is_some_and(|e| e == "json") && p.parent() == Some(&root.join("results"))
        })
        .unwrap_or_else(|| panic!("no results JSON in {written:?}"));
    let md = files
        .iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "md"))
        .unwrap_or_else(|| panic!("no Markdown summary in {written:?}"));
    for (path, text) in [json, md] {
        assert!(
            text.contains("[redacted]"),
            "{}: the errors are quoted",
            path.display()
        );
    }
    for (path, text) in &files {
        assert!(!text.contains(KEY), "the key reached {}", path.display());
    }
    // Each kind of quoting was exercised.
    for needle in [
        "HTTP 401",
        "HTTP 500",
        "server error in stream",
        "malformed event",
    ] {
        assert!(
            json.1.contains(needle),
            "missing {needle:?} in the results JSON"
        );
    }
}

/// The embedded engine's own faults as a candidate, through `servegate run`:
/// 5xx at 10% and 50%, dropped streams, stalls past the request timeout.
/// Each run ends within its timeouts, fails its `error_rate` gate, counts
/// the failures by kind as the engine caused them, and quotes the reason.
#[test]
fn engine_faults_fail_the_gate_with_their_counts() {
    let cases: [(&str, &str, &str, std::ops::RangeInclusive<u64>); 4] = [
        (
            "5xx at 10%",
            "error_rate = 0.1, seed = 3",
            "http_5xx",
            1..=10,
        ),
        (
            "5xx at 50%",
            "error_rate = 0.5, seed = 3",
            "http_5xx",
            12..=28,
        ),
        (
            "dropped streams 30%",
            "drop_rate = 0.3, seed = 3",
            "stream",
            4..=20,
        ),
        (
            "stall past the timeout",
            "stall_ms = 3000.0",
            "timeout",
            40..=40,
        ),
    ];
    for (name, knobs, kind, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("servegate.toml"),
            format!(
                "model = \"m\"\n\
                 [targets.candidate]\nsim = {{ ttft_ms = 2.0, tpot_ms = 1.0, {knobs} }}\n\
                 [targets.baseline]\nsim = {{ ttft_ms = 2.0, tpot_ms = 1.0 }}\n\
                 [workload]\nmax_tokens = 8\nconcurrency = 8\nnum_requests = 40\nwarmup = 0\n\
                 request_timeout_s = 1.0\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("prompts")).unwrap();
        std::fs::write(
            root.join("prompts/short.txt"),
            "hello there\nanother prompt\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("scenarios")).unwrap();
        std::fs::write(
            root.join("scenarios/faults.toml"),
            "[workload]\nprompts = \"short\"\n[gate]\nerror_rate = { max = 0.0 }\n\
             throughput_total = { min_ratio = 0.5 }\n",
        )
        .unwrap();
        let (code, wall, rss, stdout, stderr) =
            run_servegate(&["--root", root.to_str().unwrap(), "run"], &[], secs(60.0));
        let all = format!("{stdout}\n{stderr}");
        let results = std::fs::read_dir(root.join("results"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("results written");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
        let summary = &json["cases"][0]["candidate"]["summary"];
        let failed = summary["errors_by_kind"][kind].as_u64().unwrap_or(0);
        Run {
            code,
            wall,
            peak_rss_mb: rss,
            stdout: stdout.clone(),
            stderr,
            json: None,
        }
        .report(name, &format!("{failed} × {kind} of 40, gate failed"));
        assert_eq!(code, Some(1), "{name}: {all}");
        assert!(
            expected.contains(&failed),
            "{name}: {failed} × {kind}\n{all}"
        );
        assert_eq!(
            summary["failed"].as_u64().unwrap() + summary["completed"].as_u64().unwrap(),
            40,
            "{name}: every request counted"
        );
        assert!(stdout.contains("failed request"), "{name}: {all}");
        // Bounded: the stall case ends by its 1 s request timeout.
        assert!(wall < secs(30.0), "{name}: {wall:?}");
        assert!(rss < 200.0, "{name}: {rss} MB");
    }
}

/// A server shaped like llama.cpp's: text prompts only (token ids and lists
/// answer HTTP 500), `echo` ignored (only the generated token's
/// log-probability comes back), streams with `: ping` comments and no
/// usage, `/tokenize` taking `content`, no `/metrics`. The probe says so
/// feature by feature (a server error on a variant of a completion that
/// worked is a refusal), and still exits 0: the server can generate.
#[test]
fn probe_tells_what_a_llama_cpp_like_server_supports() {
    let server = Hostile::start(|req, sock, stop| {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let json = |sock: &mut TcpStream, v: Value| {
            respond(
                sock,
                stop,
                "200 OK",
                "application/json",
                v.to_string().as_bytes(),
            )
        };
        match req.path.as_str() {
            "/v1/models" => models(sock, stop),
            "/tokenize" if body["content"].is_string() => {
                json(sock, serde_json::json!({"tokens": [1, 15, 16]}))
            }
            "/tokenize" => respond(
                sock,
                stop,
                "400 Bad Request",
                "application/json",
                br#"{"error":{"message":"\"content\" must be provided"}}"#,
            ),
            "/v1/completions" | "/v1/chat/completions"
                if !body["prompt"].is_string() && body["messages"].is_null() =>
            {
                respond(
                    sock,
                    stop,
                    "500 Internal Server Error",
                    "application/json",
                    br#"{"error":{"message":"prompt must be a string"}}"#,
                )
            }
            "/v1/completions" | "/v1/chat/completions" if body["stream"] == true => {
                let chat = req.path.contains("chat");
                let event = if chat {
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
                } else {
                    EVENT
                };
                let stream = format!("{}: ping\n\n{event}{event}data: [DONE]\n\n", sse_head());
                let _ = send(sock, stream.as_bytes(), stop);
            }
            "/v1/completions" => json(
                sock,
                serde_json::json!({"choices": [{"index": 0, "text": "x",
                "logprobs": {"token_logprobs": [-0.5], "tokens": ["x"]}}]}),
            ),
            "/v1/chat/completions" => json(
                sock,
                serde_json::json!({"choices": [{"index": 0,
                "message": {"role": "assistant", "content": "x"}}]}),
            ),
            _ => respond(sock, stop, "404 Not Found", "text/plain", b"File Not Found"),
        }
    });
    let out = std::process::Command::new(BIN)
        .args(["probe", &server.url(), "--json", "--timeout", "5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    let support = |feature: &str| -> String {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"].as_str().unwrap().starts_with(feature))
            .unwrap_or_else(|| panic!("{feature}: {text}"))["support"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(report["model"], "m");
    for (feature, want) in [
        ("/v1/completions", "yes"),
        ("/v1/completions, streamed", "yes"),
        ("/v1/chat/completions, streamed", "yes"),
        ("usage chunk", "no"),
        ("usage on every event", "no"),
        ("SSE comment lines", "yes"),
        ("prompt log-probabilities", "no"),
        ("token-id prompts", "no"),
        ("several prompts", "no"),
        ("tokenize endpoint", "yes"),
        ("Prometheus /metrics", "no"),
    ] {
        let got = support(feature);
        let want = if want == "?" { "unknown" } else { want };
        assert_eq!(got, want, "{feature}: {text}");
    }
    assert!(text.contains("llama.cpp /tokenize"), "{text}");
    assert!(text.contains("prompt must be a string"), "{text}");
    assert!(text.contains("not echoed"), "{text}");

    // Nothing listening: one line saying so, exit 1, no table of question marks.
    let port = crate::common::free_port();
    let out = std::process::Command::new(BIN)
        .args([
            "probe",
            &format!("http://127.0.0.1:{port}"),
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot ask"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

/// A strict server that refuses every field it does not know (as OpenAI's
/// own API does with `ignore_eos`): `stream_options` and `ignore_eos` get
/// HTTP 400. The probe finds both refused, so `run` and `bench` leave them
/// out, every request succeeds, tokens are counted from the events, and
/// the results and console say how requests were shaped.
#[test]
fn a_strict_server_gets_only_the_fields_it_takes() {
    let refusals = Arc::new(AtomicUsize::new(0));
    let measured = Arc::new(AtomicUsize::new(0));
    let (r, m) = (refusals.clone(), measured.clone());
    let server = completions(move |req, sock, stop| {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let unknown = ["stream_options", "ignore_eos"]
            .into_iter()
            .find(|k| body.get(*k).is_some());
        if let Some(key) = unknown {
            r.fetch_add(1, Ordering::Relaxed);
            let error = serde_json::json!({"error": {"message":
                format!("Unrecognized request argument supplied: {key}")}});
            return respond(
                sock,
                stop,
                "400 Bad Request",
                "application/json",
                error.to_string().as_bytes(),
            );
        }
        match req.path.as_str() {
            "/v1/completions" if body["stream"] == true => {
                // The probe's own requests say "Hello".
                if body["prompt"] != "Hello" {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                let stream = format!("{}{EVENT}{EVENT}data: [DONE]\n\n", sse_head());
                let _ = send(sock, stream.as_bytes(), stop);
            }
            "/v1/completions" => respond(
                sock,
                stop,
                "200 OK",
                "application/json",
                br#"{"choices":[{"index":0,"text":"x x"}],"usage":{"prompt_tokens":2,"completion_tokens":2}}"#,
            ),
            _ => respond(sock, stop, "404 Not Found", "text/plain", b"not here"),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        format!(
            "model = \"m\"\n\
             [targets.candidate]\nurl = \"{0}\"\n[targets.baseline]\nurl = \"{0}\"\n\
             [workload]\nmax_tokens = 2\nconcurrency = 2\nnum_requests = 6\nwarmup = 0\nrequest_timeout_s = 5.0\n",
            server.url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("prompts")).unwrap();
    std::fs::write(root.join("prompts/short.txt"), "hello there\nanother\n").unwrap();
    std::fs::create_dir_all(root.join("scenarios")).unwrap();
    std::fs::write(
        root.join("scenarios/strict.toml"),
        "[workload]\nprompts = \"short\"\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let (code, _, _, stdout, stderr) =
        run_servegate(&["--root", root.to_str().unwrap(), "run"], &[], secs(60.0));
    let outcome = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(0), "{outcome}");
    // Both sides measured every request, none refused after the probe's.
    assert_eq!(measured.load(Ordering::Relaxed), 12, "{outcome}");
    let probe_refusals = refusals.load(Ordering::Relaxed);
    assert!(probe_refusals <= 6, "{probe_refusals} refusals: {outcome}");
    assert!(
        outcome.contains("candidate `candidate`: streams: no stream_options (refused)"),
        "{outcome}"
    );
    assert!(
        outcome.contains("ignore_eos not sent (refused)"),
        "{outcome}"
    );
    let files = all_files(&root.join("results"));
    let (_, json) = files
        .iter()
        .find(|(p, _)| {
            p.extension().is_some_and(|e| e == "json") && p.parent() == Some(&root.join("results"))
        })
        .expect("a results JSON");
    let results: Value = serde_json::from_str(json).unwrap();
    let case = &results["cases"][0];
    let probe = &case["candidate"]["probe"];
    let choices = probe["choices"].to_string();
    assert!(choices.contains("no stream_options"), "{probe}");
    assert!(probe["found"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["feature"].as_str().unwrap().starts_with("ignore_eos")
            && f["support"] == "no"
            && f["detail"].as_str().unwrap().contains("Unrecognized")));
    assert_eq!(case["candidate"]["summary"]["completed"], 6, "{case}");

    // `bench` probes the same way and keeps the probe in its file.
    measured.store(0, Ordering::Relaxed);
    let prompts = root.join("prompts.json");
    std::fs::write(&prompts, r#"{"short": ["hello there"]}"#).unwrap();
    let out = root.join("bench.json");
    let (code, _, _, stdout, stderr) = run_servegate(
        &[
            "bench",
            "--base-url",
            &server.url(),
            "--prompts-file",
            prompts.to_str().unwrap(),
            "--prompt-length",
            "short",
            "--concurrency",
            "1",
            "--max-tokens",
            "2",
            "--num-requests",
            "3",
            "--warmup",
            "0",
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
        secs(60.0),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(measured.load(Ordering::Relaxed), 3);
    assert!(stderr.contains("probe: ignore_eos not sent"), "{stderr}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(file["probe"]["choices"]
        .to_string()
        .contains("no stream_options"));
    assert_eq!(file["scenarios"][0]["summary"]["completed"], 3, "{file}");
    assert_eq!(file["scenarios"][0]["token_source"], "events", "{file}");
}
