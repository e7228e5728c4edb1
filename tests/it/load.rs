//! The load generator against real HTTP servers: the embedded engine, and
//! hand-written broken servers.

use std::sync::Arc;
use std::time::Duration;

use servegate::client::Client;
use servegate::config::{Endpoint, SimSpec, Slo, WorkloadConfig};
use servegate::loadgen::{self, BenchSpec};
use servegate::metrics::{ErrorKind, TokenSource};
use servegate::sim::SimServer;
use servegate::tokenizer::Tokenizer;
use servegate::workload::Prompt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{rt, BIN};

fn sim(ttft_ms: f64, tpot_ms: f64) -> SimServer {
    let spec = SimSpec::constant(ttft_ms, tpot_ms);
    SimServer::start_local(&spec, "m").unwrap()
}

fn prompts() -> Arc<Vec<Prompt>> {
    Arc::new(vec![
        Prompt {
            text: "first test prompt".into(),
            tokens: None,
            max_tokens: None,
            arrival_s: None,
            turn: None,
        },
        Prompt {
            text: "a second, slightly longer test prompt".into(),
            tokens: None,
            max_tokens: None,
            arrival_s: None,
            turn: None,
        },
    ])
}

fn spec(workload: WorkloadConfig) -> BenchSpec {
    BenchSpec {
        model: "m".into(),
        workload,
        prompts: prompts(),
        tokenizer: None,
        progress: None,
        dialect: Default::default(),
        measuring: None,
    }
}

fn workload(max_tokens: u32, concurrency: u32, num_requests: u32) -> WorkloadConfig {
    WorkloadConfig {
        max_tokens,
        concurrency,
        num_requests,
        warmup: 1,
        ..WorkloadConfig::default()
    }
}

/// A word-level tokenizer saved as `tokenizer.json`: one token per whitespace-separated word.
fn word_tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
    let vocab = [("[UNK]".to_string(), 0u32), ("the".to_string(), 1)]
        .into_iter()
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(WhitespaceSplit));
    let path = dir.join("tokenizer.json");
    t.save(&path, false).unwrap();
    path
}

#[test]
fn ttft_and_itl_match_the_configured_engine_at_low_concurrency() {
    let server = sim(30.0, 10.0);
    let client = Client::new(&server.url(), None).unwrap();
    let result = rt().block_on(loadgen::run(&client, &spec(workload(16, 2, 8))));
    let s = &result.summary;
    assert_eq!(s.completed, 8, "{:?}", s.errors_by_kind);
    assert_eq!(s.total_output_tokens, 8 * 16);
    assert_eq!(s.tokens_from_usage, 8);
    // Loopback and the engine's 1 ms timer add a little; nothing more.
    assert!(
        (30.0..36.0).contains(&s.ttft_ms.p50),
        "TTFT p50 {}",
        s.ttft_ms.p50
    );
    assert!(
        (9.0..11.5).contains(&s.itl_ms.p50),
        "ITL p50 {}",
        s.itl_ms.p50
    );
    assert!(
        (9.0..11.5).contains(&s.tpot_ms.mean),
        "TPOT mean {}",
        s.tpot_ms.mean
    );
    // The engine reports usage on every event, so per-token ITL is available and equal here.
    assert_eq!(s.itl_per_token_ms.count, s.itl_ms.count);
    assert_eq!(s.peak_concurrency, 2);
    let e2e_expected = 30.0 + 15.0 * 10.0;
    assert!(
        (s.e2e_ms.p50 - e2e_expected).abs() < 8.0,
        "E2E p50 {}",
        s.e2e_ms.p50
    );
}

#[test]
fn chat_streams_skip_the_role_preamble() {
    let server = sim(25.0, 5.0);
    let client = Client::new(&server.url(), None).unwrap();
    let w = WorkloadConfig {
        endpoint: Endpoint::Chat,
        ..workload(8, 1, 3)
    };
    let result = rt().block_on(loadgen::run(&client, &spec(w)));
    let s = &result.summary;
    assert_eq!(s.completed, 3, "{:?}", result.records);
    // Counted as a token, the preamble (sent on arrival) would make TTFT ~0.
    assert!(s.ttft_ms.p50 >= 25.0, "TTFT p50 {}", s.ttft_ms.p50);
    for r in &result.records {
        assert_eq!(r.event_times_s.len(), 8);
        assert_eq!(r.output_tokens, 8);
        assert!(r.input_tokens.is_some());
    }
}

#[test]
fn non_streaming_requests_time_the_whole_response() {
    let server = sim(20.0, 5.0);
    let client = Client::new(&server.url(), None).unwrap();
    for endpoint in [Endpoint::Completions, Endpoint::Chat] {
        let w = WorkloadConfig {
            stream: false,
            endpoint,
            ..workload(10, 2, 4)
        };
        let result = rt().block_on(loadgen::run(&client, &spec(w)));
        let s = &result.summary;
        assert_eq!(s.completed, 4);
        assert_eq!(s.total_output_tokens, 40);
        // One "event": the response, after every token was due (20 + 9 × 5 ms).
        assert!(
            s.e2e_ms.p50 >= 65.0 && s.e2e_ms.p50 < 80.0,
            "{endpoint:?} E2E {}",
            s.e2e_ms.p50
        );
        assert_eq!(s.ttft_ms.p50, s.e2e_ms.p50);
    }
}

#[test]
fn token_counts_fall_back_to_the_tokenizer_then_to_events() {
    let spec_no_usage = SimSpec {
        usage: Some(false),
        ..SimSpec::constant(5.0, 1.0)
    };
    let server = SimServer::start_local(&spec_no_usage, "m").unwrap();
    let client = Client::new(&server.url(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A word-level tokenizer counts words: a different count from the
    // engine's own, which shows the count really comes from the tokenizer.
    let tokenizer = Tokenizer::from_file(&word_tokenizer(dir.path())).unwrap();

    let mut with_tokenizer = spec(workload(12, 2, 4));
    with_tokenizer.tokenizer = Some(tokenizer.clone());
    let r = rt().block_on(loadgen::run(&client, &with_tokenizer));
    assert_eq!(r.summary.tokens_from_tokenizer, 4);
    let texts_words: u64 = r.records.iter().map(|x| x.output_tokens).sum();
    assert_eq!(r.summary.total_output_tokens, texts_words);
    assert!(r
        .records
        .iter()
        .all(|x| x.output_tokens > 0 && x.output_tokens <= 12));
    assert!(r
        .records
        .iter()
        .all(|x| x.token_source == TokenSource::Tokenizer));
    assert_eq!(
        r.summary.itl_per_token_ms.count, 0,
        "no usage deltas without usage"
    );

    let r = rt().block_on(loadgen::run(&client, &spec(workload(12, 2, 4))));
    assert_eq!(r.summary.tokens_from_events, 4);
    assert_eq!(r.summary.total_output_tokens, 4 * 12);
}

#[test]
fn open_loop_follows_the_schedule_and_reports_client_queueing() {
    let server = sim(10.0, 2.0);
    let client = Client::new(&server.url(), None).unwrap();
    // 20 req/s for 20 requests, each ~48 ms long: the phase lasts about one
    // second whatever the server does.
    let w = WorkloadConfig {
        rate: Some(20.0),
        seed: 3,
        ..workload(20, 1, 20)
    };
    let r = rt().block_on(loadgen::run(&client, &spec(w)));
    let arrivals = servegate::workload::arrival_times(20, 20.0, 1.0, 3);
    let span = arrivals[19];
    assert_eq!(r.summary.completed, 20);
    assert!(
        (r.summary.duration_s - span - 0.048).abs() < 0.05,
        "duration {} span {span}",
        r.summary.duration_s
    );
    for (rec, at) in r.records.iter().zip(&arrivals) {
        assert!(
            (rec.start_s - at).abs() < 0.02,
            "sent at {} due {at}",
            rec.start_s
        );
    }

    // Far above what one stream can serve: with max_concurrency = 1 the
    // client queues, and the queueing is reported apart from latency.
    let w = WorkloadConfig {
        rate: Some(500.0),
        max_concurrency: Some(1),
        ..workload(20, 1, 10)
    };
    let r = rt().block_on(loadgen::run(&client, &spec(w)));
    let s = &r.summary;
    assert_eq!(s.peak_concurrency, 1);
    assert!(s.queue_ms.max > 100.0, "queue max {}", s.queue_ms.max);
    assert!(
        s.e2e_ms.max < 80.0,
        "latency excludes queueing: {}",
        s.e2e_ms.max
    );
}

#[test]
fn goodput_counts_requests_within_slo() {
    let server = sim(20.0, 2.0);
    let client = Client::new(&server.url(), None).unwrap();
    let tight = Slo {
        ttft_ms: Some(5.0),
        ..Slo::default()
    };
    let loose = Slo {
        ttft_ms: Some(500.0),
        tpot_ms: Some(50.0),
        e2e_ms: Some(2000.0),
    };
    for (slo, expect_zero) in [(tight, true), (loose, false)] {
        let w = WorkloadConfig {
            slo: Some(slo),
            ..workload(8, 2, 6)
        };
        let s = rt().block_on(loadgen::run(&client, &spec(w))).summary;
        let goodput = s.goodput.unwrap();
        if expect_zero {
            assert_eq!(goodput, 0.0);
        } else {
            assert!((goodput - s.request_throughput).abs() < 1e-9);
        }
    }
}

/// A one-shot HTTP server that answers every request with `body` as an event stream, then closes.
async fn broken_server(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                // Read the request head and its body (Content-Length).
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if seen.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn malformed_and_truncated_streams_fail_the_request_not_the_run() {
    let rt = rt();
    for (body, needle) in [
        (
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {garbage\n\ndata: [DONE]\n\n",
            "malformed event",
        ),
        (
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n",
            "without [DONE] after 2 events",
        ),
    ] {
        let url = rt.block_on(broken_server(body));
        let client = Client::new(&url, None).unwrap();
        let w = WorkloadConfig {
            warmup: 0,
            ..workload(4, 2, 4)
        };
        let r = rt.block_on(loadgen::run(&client, &spec(w)));
        assert_eq!(r.summary.failed, 4);
        assert_eq!(r.summary.error_rate, 1.0);
        assert_eq!(r.summary.errors_by_kind.get("stream"), Some(&4));
        assert!(r
            .records
            .iter()
            .all(|x| x.error_kind == Some(ErrorKind::Stream)));
        assert!(
            r.records[0].error.as_ref().unwrap().contains(needle),
            "{:?}",
            r.records[0].error
        );
        assert_eq!(
            r.summary.ttft_ms.count, 0,
            "failed requests stay out of latency"
        );
    }
}

#[test]
fn per_request_timeout_counts_as_a_timeout() {
    let server = sim(2000.0, 1.0);
    let client = Client::new(&server.url(), None).unwrap();
    let w = WorkloadConfig {
        request_timeout_s: 0.2,
        warmup: 0,
        ..workload(4, 2, 2)
    };
    let r = rt().block_on(loadgen::run(&client, &spec(w)));
    assert_eq!(r.summary.errors_by_kind.get("timeout"), Some(&2));
    assert!(r.summary.duration_s < 1.0);
    let _ = Duration::ZERO;
}

#[test]
fn bench_cli_writes_the_old_schema() {
    let server = sim(5.0, 1.0);
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"short": ["hello there"], "medium": ["a somewhat longer prompt here"]}"#,
    )
    .unwrap();
    let out_file = dir.path().join("out.json");
    let secret = "sk-test-secret-value";
    let out = std::process::Command::new(BIN)
        .args(["bench", "--base-url", &server.url(), "--prompts-file"])
        .arg(&prompts)
        .args([
            "--prompt-length",
            "short,medium",
            "--warmup",
            "1",
            "--num-requests",
            "4",
        ])
        .args([
            "--concurrency",
            "1,2",
            "--max-tokens",
            "8",
            "--save-detailed",
            "--api-key-env",
            "SG_TEST_KEY",
        ])
        .arg("--output")
        .arg(&out_file)
        .env("SG_TEST_KEY", secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("short_mt8_c1") && stdout.contains("medium_mt8_c2"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(!text.contains(secret), "the API key must never be written");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "m", "model taken from /v1/models");
    assert_eq!(v["warmup"], 1);
    assert_eq!(v["num_requests"], 4);
    let names: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "short_mt8_c1",
            "short_mt8_c2",
            "medium_mt8_c1",
            "medium_mt8_c2"
        ]
    );
    let first = &v["scenarios"][0];
    for key in [
        "ttft_p50_ms",
        "ttft_p95_ms",
        "ttft_p99_ms",
        "ttft_mean_ms",
        "throughput_mean_tps",
        "throughput_total_tps",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_mean_ms",
        "itl_p50_ms",
        "itl_p95_ms",
        "itl_mean_ms",
        "total_tokens",
        "total_time_s",
        "tpot_p50_ms",
        "request_throughput",
        "error_rate",
        "peak_concurrency",
        "token_source",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(first["total_tokens"], 32);
    assert_eq!(first["token_source"], "usage");
    assert_eq!(first["details"].as_array().unwrap().len(), 4);
}

/// What a recording server saw: each request's body, and its answer.
type Seen = Arc<std::sync::Mutex<Vec<(serde_json::Value, String)>>>;

/// A server answering every (non-streamed) completion or chat request with
/// a fresh text, and recording the request with that answer.
fn recording_server(rt: &tokio::runtime::Runtime) -> (String, Seen) {
    use axum::routing::post;
    use axum::Json;
    use serde_json::{json, Value};
    let seen: Seen = Arc::default();
    let answer = |seen: Seen, chat: bool| {
        move |Json(body): Json<Value>| async move {
            let mut seen = seen.lock().unwrap();
            let text = format!("answer number {}", seen.len());
            seen.push((body, text.clone()));
            let choice = if chat {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
            } else {
                json!({"index": 0, "text": text, "finish_reason": "length"})
            };
            Json(
                json!({"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
            )
        }
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(answer(seen.clone(), true)))
        .route("/v1/completions", post(answer(seen.clone(), false)));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Two sessions of three turns each: every turn after the first carries the
/// earlier messages with the server's own answers, on both endpoints, and
/// the records say which session and turn each request was.
#[test]
fn a_conversations_later_turns_carry_the_whole_history() {
    use servegate::config::{ConversationPrompts, PromptSource};
    let rt = rt();
    let (url, seen) = recording_server(&rt);
    let client = Client::new(&url, None).unwrap();
    let turn = |session: usize, t: u32| Prompt {
        text: format!("session {session} message {t}"),
        tokens: None,
        max_tokens: None,
        arrival_s: None,
        turn: Some(t),
    };
    let prompts: Vec<Prompt> = (0..2)
        .flat_map(|s| (0..3).map(move |t| turn(s, t)))
        .collect();
    let think_time_s = 0.1;
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        seen.lock().unwrap().clear();
        let w = WorkloadConfig {
            endpoint,
            stream: false,
            prompts: PromptSource::Conversations {
                conversations: ConversationPrompts {
                    sharegpt: None,
                    turns: Some(3),
                    input_tokens: Some(4),
                    output_tokens: None,
                    max_turns: None,
                    think_time_s,
                },
            },
            warmup: 0,
            ..workload(3, 2, 2)
        };
        let bench = BenchSpec {
            prompts: Arc::new(prompts.clone()),
            ..spec(w)
        };
        let result = rt.block_on(loadgen::run(&client, &bench));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 6, "{endpoint:?}");
        for session in 0..2 {
            // This session's requests in the order sent, with their answers.
            let mine: Vec<&(serde_json::Value, String)> = seen
                .iter()
                .filter(|(body, _)| {
                    body.to_string()
                        .contains(&format!("session {session} message 0"))
                })
                .collect();
            assert_eq!(mine.len(), 3, "{endpoint:?} {seen:?}");
            for t in 1..3 {
                let (before, answer) = mine[t - 1];
                let (body, _) = mine[t];
                let new = format!("session {session} message {t}");
                match endpoint {
                    Endpoint::Chat => {
                        let mut expected = before["messages"].as_array().unwrap().clone();
                        expected.push(serde_json::json!({"role": "assistant", "content": answer}));
                        expected.push(serde_json::json!({"role": "user", "content": new}));
                        assert_eq!(body["messages"].as_array().unwrap(), &expected);
                    }
                    Endpoint::Completions => {
                        let prompt = body["prompt"].as_str().unwrap();
                        let earlier = before["prompt"].as_str().unwrap();
                        assert!(
                            prompt.starts_with(&format!("{earlier} {answer}")),
                            "{prompt:?}"
                        );
                        assert!(prompt.ends_with(&format!("User: {new}\n\nAssistant:")));
                    }
                }
            }
        }
        let s = &result.summary;
        assert_eq!(s.completed, 6);
        let sessions = s.sessions.as_ref().expect("per-session figures");
        assert_eq!((sessions.sessions, sessions.completed), (2, 2));
        // Two think times per session, between its three turns.
        assert!(sessions.duration_ms.min >= 2000.0 * think_time_s);
        let turns: Vec<(u32, usize)> = s.turns.iter().map(|t| (t.turn, t.completed)).collect();
        assert_eq!(turns, vec![(0, 2), (1, 2), (2, 2)]);
        assert_eq!(s.later_turn_ttft_ms.count, 4);
        let mut places: Vec<(u32, u32)> = result
            .records
            .iter()
            .map(|r| r.turn.map(|t| (t.session, t.index)).unwrap())
            .collect();
        places.sort();
        assert_eq!(places, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    }
}

/// A loopback proxy in front of `to` that counts the connections made to it.
fn counting_proxy(
    rt: &tokio::runtime::Runtime,
    to: String,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let opened = Arc::new(AtomicUsize::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = opened.clone();
    rt.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, opened)
}

/// With warm connections (the default) every connection the measured
/// requests use is open before the first of them is sent; with cold ones
/// (and no warm-up requests) the measured requests open them.
#[test]
fn warm_connections_are_open_before_measuring() {
    use std::sync::atomic::Ordering;
    let server = sim(5.0, 1.0);
    let rt = rt();
    let engine = server.url().trim_start_matches("http://").to_string();
    for warm in [true, false] {
        let (url, opened) = counting_proxy(&rt, engine.clone());
        let client = Client::new(&url, None).unwrap();
        let measuring = Arc::new(loadgen::PhaseStart::default());
        let w = WorkloadConfig {
            warmup: 0,
            warm_connections: warm,
            ..workload(4, 8, 24)
        };
        let bench = BenchSpec {
            measuring: Some(measuring.clone()),
            ..spec(w)
        };
        let at_start = opened.clone();
        let seen_at_start = rt.spawn(async move {
            measuring.began().await;
            let seen = at_start.load(Ordering::SeqCst);
            measuring.watcher_ready();
            seen
        });
        let result = rt.block_on(loadgen::run(&client, &bench));
        assert_eq!(result.summary.completed, 24);
        let before = rt.block_on(seen_at_start).unwrap();
        let after = opened.load(Ordering::SeqCst);
        if warm {
            assert_eq!((before, after), (8, 8), "warm");
        } else {
            assert_eq!(before, 0, "cold");
            assert!(after >= 8, "cold: {after}");
        }
    }
}
