//! The embedded engine through real HTTP: wire format, scheduler, language
//! model, determinism and faults.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use servegate::client::SseDecoder;
use servegate::config::{SimMode, SimSpec};
use servegate::sim::SimServer;

use crate::common::{free_port, rt, BIN};

fn fast() -> SimSpec {
    SimSpec::constant(2.0, 1.0)
}

fn start(spec: SimSpec) -> SimServer {
    SimServer::start_local(&spec, "m").unwrap()
}

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Posts a streaming request; returns each SSE payload with its arrival time.
async fn stream(url: &str, path: &str, body: Value) -> Vec<(Duration, String)> {
    use futures_util::StreamExt;
    let sent = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut bytes = r.bytes_stream();
    let mut dec = SseDecoder::new();
    let mut out = Vec::new();
    while let Some(chunk) = bytes.next().await {
        let at = sent.elapsed();
        for p in dec.feed(&chunk.unwrap()).unwrap() {
            out.push((at, p));
        }
    }
    out.extend(
        dec.finish()
            .unwrap()
            .into_iter()
            .map(|p| (sent.elapsed(), p)),
    );
    out
}

fn json_events(events: &[(Duration, String)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, p)| p != "[DONE]")
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect()
}

#[test]
fn models_health_tokenize_detokenize_metrics() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let models: Value = reqwest::get(format!("{url}/v1/models"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["object"], "list");
        assert_eq!(models["data"][0]["id"], "m");
        assert_eq!(
            reqwest::get(format!("{url}/health"))
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );

        let (s, t) = post(
            &url,
            "/tokenize",
            json!({"prompt": "The engine serves tokens."}),
        )
        .await;
        assert_eq!(s, 200);
        let tokens = t["tokens"].as_array().unwrap().clone();
        assert_eq!(t["count"].as_u64().unwrap() as usize, tokens.len());
        assert!(t["max_model_len"].as_u64().unwrap() >= 2048);
        let (s, d) = post(&url, "/detokenize", json!({"tokens": tokens})).await;
        assert_eq!(s, 200);
        assert_eq!(d["prompt"], "The engine serves tokens.");

        let (s, _) = post(
            &url,
            "/v1/completions",
            json!({"model": "m", "prompt": "a b", "max_tokens": 3}),
        )
        .await;
        assert_eq!(s, 200);
        let metrics = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:generation_tokens_total",
        ] {
            assert!(metrics.contains(&format!("# TYPE {name}")), "{metrics}");
        }
        assert!(
            metrics.contains("vllm:generation_tokens_total{model_name=\"m\"} 3"),
            "{metrics}"
        );
    });
}

#[test]
fn completion_wire_format_with_echo_and_logprobs() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let (s, r) = post(
            &url,
            "/v1/completions",
            json!({
                "model": "m", "prompt": "The scheduler decides", "max_tokens": 4,
                "echo": true, "logprobs": 3, "temperature": 0, "ignore_eos": true
            }),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["object"], "text_completion");
        assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
        assert!(r["created"].as_u64().unwrap() > 0);
        let c = &r["choices"][0];
        assert_eq!(c["index"], 0);
        assert_eq!(c["finish_reason"], "length");
        assert!(c["text"]
            .as_str()
            .unwrap()
            .starts_with("The scheduler decides"));
        let lp = &c["logprobs"];
        let n_prompt = r["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
        let tokens = lp["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), n_prompt + 4);
        assert_eq!(r["usage"]["completion_tokens"], 4);
        assert_eq!(
            r["usage"]["total_tokens"].as_u64().unwrap() as usize,
            n_prompt + 4
        );
        let token_lps = lp["token_logprobs"].as_array().unwrap();
        assert!(
            token_lps[0].is_null(),
            "the first prompt token has no log-probability"
        );
        assert!(lp["top_logprobs"][0].is_null());
        for (i, v) in token_lps.iter().enumerate().skip(1) {
            let x = v.as_f64().unwrap();
            assert!(x < 0.0 && x.is_finite(), "token {i}: {x}");
            let top = lp["top_logprobs"][i].as_object().unwrap();
            assert!(!top.is_empty() && top.len() <= 4);
        }
        // Offsets index the echoed text, token by token.
        let offsets: Vec<u64> = lp["text_offset"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(joined, c["text"].as_str().unwrap());
        assert_eq!(offsets[0], 0);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        // Greedy: each generated token is the best of its alternatives.
        for i in n_prompt..tokens.len() {
            let best = lp["top_logprobs"][i]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_f64().unwrap())
                .fold(f64::MIN, f64::max);
            assert!((token_lps[i].as_f64().unwrap() - best).abs() < 1e-9);
        }
    });
}

#[test]
fn prompt_forms_and_max_tokens_zero() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let (_, t) = post(&url, "/tokenize", json!({"prompt": "The river bends"})).await;
        let ids = t["tokens"].clone();
        for (prompt, choices) in [
            (json!("The river bends"), 1),
            (json!(["The river bends", "A comet is"]), 2),
            (ids.clone(), 1),
            (json!([ids.clone(), ids.clone()]), 2),
        ] {
            let (s, r) = post(
                &url,
                "/v1/completions",
                json!({"prompt": prompt, "max_tokens": 2}),
            )
            .await;
            assert_eq!(s, 200, "{prompt}: {r}");
            assert_eq!(r["choices"].as_array().unwrap().len(), choices);
            assert_eq!(r["choices"][choices - 1]["index"], choices - 1);
        }
        // lm-evaluation-harness scores with echo, logprobs and no new tokens.
        let (s, r) = post(
            &url,
            "/v1/completions",
            json!({"prompt": ids, "max_tokens": 0, "echo": true, "logprobs": 1}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["choices"][0]["text"], "The river bends");
        assert_eq!(r["usage"]["completion_tokens"], 0);
        assert_eq!(
            r["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .unwrap()
                .len(),
            t["count"].as_u64().unwrap() as usize
        );
    });
}

#[test]
fn streaming_completion_and_chat() {
    let server = start(SimSpec::constant(10.0, 3.0));
    let url = server.url();
    rt().block_on(async {
        let events = stream(&url, "/v1/completions", json!({
            "prompt": "A request that arrives", "max_tokens": 5, "stream": true, "ignore_eos": true,
            "stream_options": {"include_usage": true}, "logprobs": 1
        })).await;
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let chunks = json_events(&events);
        assert_eq!(chunks.len(), 6, "five tokens and a usage chunk");
        for c in &chunks[..5] {
            assert_eq!(c["object"], "text_completion");
            assert_eq!(c["choices"].as_array().unwrap().len(), 1);
            assert_eq!(c["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), 1);
        }
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "length");
        assert!(chunks[3]["choices"][0]["finish_reason"].is_null());
        assert_eq!(chunks[5]["choices"].as_array().unwrap().len(), 0);
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 5);
        // Timing: first token after ~10 ms, then every ~3 ms.
        assert!(events[0].0 >= Duration::from_millis(10));

        let events = stream(&url, "/v1/chat/completions", json!({
            "messages": [{"role": "user", "content": "Describe the cache."}], "max_tokens": 3, "stream": true,
            "ignore_eos": true, "logprobs": true, "top_logprobs": 2
        })).await;
        let chunks = json_events(&events);
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks.len(), 4, "role chunk and three tokens");
        let lp = &chunks[1]["choices"][0]["logprobs"]["content"][0];
        assert!(lp["logprob"].as_f64().unwrap() < 0.0);
        assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 2);

        let (s, r) = post(&url, "/v1/chat/completions", json!({
            "model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "ignore_eos": true
        })).await;
        assert_eq!(s, 200);
        assert_eq!(r["object"], "chat.completion");
        assert_eq!(r["choices"][0]["message"]["role"], "assistant");
        assert_eq!(r["usage"]["completion_tokens"], 4);
    });
}

#[test]
fn bad_requests_get_openai_errors() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let (s, r) = post(
            &url,
            "/v1/completions",
            json!({"model": "other", "prompt": "x"}),
        )
        .await;
        assert_eq!(s, 404);
        assert!(r["error"]["message"].as_str().unwrap().contains("other"));
        let (s, r) = post(
            &url,
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": "many"}),
        )
        .await;
        assert_eq!(s, 422, "{r}");
        assert!(r["error"]["message"].is_string());
        let (s, _) = post(&url, "/v1/completions", json!({"prompt": {"no": 1}})).await;
        assert_eq!(s, 400);
        let (s, _) = post(
            &url,
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 9}),
        )
        .await;
        assert_eq!(s, 400);
        let (s, _) = post(&url, "/v1/completions", json!({"prompt": [999999]})).await;
        assert_eq!(s, 400);
        let (s, _) = post(&url, "/v1/chat/completions", json!({"messages": []})).await;
        assert_eq!(s, 400);
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/completions"))
            .body("{not json")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let (s, _) = post(&url, "/v1/nothing", json!({})).await;
        assert_eq!(s, 404);
    });
}

#[test]
fn stop_strings_and_eos_end_generation() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        // Greedy text from this prompt, then a stop string taken from it.
        let (_, r) = post(&url, "/v1/completions", json!({"prompt": "The cache is", "max_tokens": 12, "temperature": 0, "ignore_eos": true})).await;
        let text = r["choices"][0]["text"].as_str().unwrap().to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(words.len() >= 3, "{text}");
        let stop = words[2];
        let (_, r) = post(&url, "/v1/completions", json!({"prompt": "The cache is", "max_tokens": 12, "temperature": 0, "ignore_eos": true, "stop": [stop]})).await;
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        let cut = r["choices"][0]["text"].as_str().unwrap();
        assert!(!cut.contains(stop) && text.starts_with(cut), "{cut:?} vs {text:?}");
        // Without ignore_eos a long generation ends at the model's end of text.
        let (_, r) = post(&url, "/v1/completions", json!({"prompt": "A good test checks the behaviour that users rely on.", "max_tokens": 400, "temperature": 1.0, "seed": 3})).await;
        assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
        assert!(r["usage"]["completion_tokens"].as_u64().unwrap() < 400);
    });
}

#[test]
fn same_seed_same_text_and_logprobs() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let body = |seed: u64| json!({"prompt": "The orchard grows", "max_tokens": 16, "temperature": 0.9, "seed": seed, "logprobs": 2, "ignore_eos": true});
        let (_, a) = post(&url, "/v1/completions", body(7)).await;
        let (_, b) = post(&url, "/v1/completions", body(7)).await;
        let (_, c) = post(&url, "/v1/completions", body(8)).await;
        assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
        assert_eq!(a["choices"][0]["logprobs"], b["choices"][0]["logprobs"]);
        assert_ne!(a["choices"][0]["text"], c["choices"][0]["text"], "another seed samples another text");
    });
    // A second engine gives the same answers: nothing depends on the process's state.
    let other = start(fast());
    rt().block_on(async {
        let body = json!({"prompt": "The orchard grows", "max_tokens": 16, "temperature": 0.9, "seed": 7, "ignore_eos": true});
        let (_, a) = post(&server.url(), "/v1/completions", body.clone()).await;
        let (_, b) = post(&other.url(), "/v1/completions", body).await;
        assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    });
}

/// Multiple-choice items cut from the engine's own corpus: the context is
/// the start of a sentence, the right answer its true ending, the wrong ones
/// the endings of three other sentences.
fn corpus_items() -> Vec<(String, Vec<String>, usize)> {
    let corpus = servegate::sim::lm::CORPUS[0];
    let sentences: Vec<&str> = corpus
        .split(['.', '\n'])
        .map(str::trim)
        .filter(|s| s.split_whitespace().count() >= 8)
        .collect();
    let split = |s: &str| {
        let words: Vec<&str> = s.split_whitespace().collect();
        let half = words.len() / 2;
        (
            words[..half].join(" "),
            format!(" {}", words[half..].join(" ")),
        )
    };
    (0..40.min(sentences.len()))
        .map(|i| {
            let (context, answer) = split(sentences[i]);
            let mut choices: Vec<String> = (1..4)
                .map(|k| split(sentences[(i + 7 * k) % sentences.len()]).1)
                .collect();
            let gold = i % 4;
            choices.insert(gold, answer);
            (context, choices, gold)
        })
        .collect()
}

/// Scores items as lm-evaluation-harness does: token-id prompts with echo,
/// continuation log-likelihood summed over its tokens, highest wins.
async fn accuracy(url: &str, items: &[(String, Vec<String>, usize)]) -> f64 {
    let mut right = 0;
    for (context, choices, gold) in items {
        let (_, t) = post(url, "/tokenize", json!({"prompt": context})).await;
        let ctx_len = t["count"].as_u64().unwrap() as usize;
        let mut best = (f64::MIN, 0);
        for (k, choice) in choices.iter().enumerate() {
            let (_, whole) = post(
                url,
                "/tokenize",
                json!({"prompt": format!("{context}{choice}")}),
            )
            .await;
            let (_, r) = post(url, "/v1/completions", json!({"prompt": whole["tokens"], "max_tokens": 0, "echo": true, "logprobs": 1, "temperature": 0})).await;
            let lps = r["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .unwrap()
                .clone();
            let score: f64 = lps[ctx_len..].iter().map(|v| v.as_f64().unwrap()).sum();
            if score > best.0 {
                best = (score, k);
            }
        }
        right += usize::from(best.1 == *gold);
    }
    right as f64 / items.len() as f64
}

#[test]
fn the_model_beats_chance_and_logprob_noise_lowers_accuracy() {
    let items = corpus_items();
    assert!(items.len() >= 30);
    let clean = start(fast());
    let noisy = start(SimSpec {
        logprob_noise: Some(4.0),
        seed: Some(1),
        ..fast()
    });
    let (a_clean, a_noisy) = rt().block_on(async {
        (
            accuracy(&clean.url(), &items).await,
            accuracy(&noisy.url(), &items).await,
        )
    });
    assert!(a_clean >= 0.8, "clean accuracy {a_clean} (chance is 0.25)");
    assert!(
        a_noisy < a_clean - 0.15,
        "noisy {a_noisy} vs clean {a_clean}"
    );
}

/// TTFT and E2E of `n` simultaneous streaming requests. Both only grow when
/// the client is slow to read, so lower bounds on them are safe on a busy machine.
async fn timings(url: &str, n: usize, max_tokens: u32) -> Vec<(Duration, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = url.to_string();
            tokio::spawn(async move {
                let events = stream(&url, "/v1/completions", json!({"prompt": format!("request {i}"), "max_tokens": max_tokens, "stream": true, "ignore_eos": true})).await;
                let times: Vec<Duration> = events.iter().filter(|(_, p)| p != "[DONE]").map(|(t, _)| *t).collect();
                (times[0], times[times.len() - 1])
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[test]
fn scheduler_queues_past_max_num_seqs_and_slows_with_batch_size() {
    let spec = SimSpec {
        mode: Some(SimMode::Engine),
        max_num_seqs: Some(4),
        step_base_ms: Some(2.0),
        step_per_seq_ms: Some(3.0),
        prefill_ms_per_token: Some(0.0),
        ..SimSpec::default()
    };
    let server = start(spec);
    let url = server.url();
    rt().block_on(async {
        // One stream: ten steps of 2 + 3 = 5 ms.
        let single = timings(&url, 1, 10).await;
        let e2e1 = single[0].1.as_secs_f64() * 1000.0;
        assert!((49.0..5000.0).contains(&e2e1), "E2E alone {e2e1} ms");
        // Four streams: steps of 2 + 4 × 3 = 14 ms once all four run.
        let four = timings(&url, 4, 10).await;
        let e2e4 = four.iter().map(|t| t.1.as_secs_f64()).fold(0.0, f64::max) * 1000.0;
        // Ten steps of 14 ms at least; alone it would have been ten of 5 ms.
        assert!(
            (135.0..5000.0).contains(&e2e4),
            "E2E of four {e2e4} ms vs one {e2e1} ms"
        );
        // Eight streams, four slots: the second four wait for a whole
        // generation of the first (10 steps of 14 ms).
        let eight = timings(&url, 8, 10).await;
        let mut ttft: Vec<f64> = eight.iter().map(|t| t.0.as_secs_f64() * 1000.0).collect();
        ttft.sort_by(f64::total_cmp);
        assert!(
            ttft[3] - ttft[0] < 40.0,
            "the first four start together: {ttft:?}"
        );
        assert!(
            ttft[4] - ttft[3] > 80.0,
            "the rest queue for a whole generation: {ttft:?}"
        );
    });
}

#[test]
fn kv_capacity_makes_requests_wait() {
    let spec = SimSpec {
        mode: Some(SimMode::Engine),
        max_num_seqs: Some(64),
        kv_capacity_tokens: Some(50),
        step_base_ms: Some(5.0),
        step_per_seq_ms: Some(0.0),
        prefill_ms_per_token: Some(0.0),
        ..SimSpec::default()
    };
    let server = start(spec);
    rt().block_on(async {
        // Each request reserves its prompt (a few tokens) + 16: two fit in 50,
        // the third waits until one of them has generated all 16 (80 ms).
        let t = timings(&server.url(), 3, 16).await;
        let mut ttft: Vec<f64> = t.iter().map(|x| x.0.as_secs_f64() * 1000.0).collect();
        ttft.sort_by(f64::total_cmp);
        assert!(ttft[1] - ttft[0] < 40.0, "two fit at once: {ttft:?}");
        assert!(
            ttft[2] - ttft[0] > 60.0,
            "the third waits for room: {ttft:?}"
        );
    });
}

#[test]
fn faults_error_drop_stall_and_slow_start() {
    let rt = rt();
    let errors = start(SimSpec {
        error_rate: Some(1.0),
        ..fast()
    });
    let (s, r) = rt.block_on(post(
        &errors.url(),
        "/v1/completions",
        json!({"prompt": "x"}),
    ));
    assert_eq!(s, 500);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("error_rate"));

    let drops = start(SimSpec {
        drop_rate: Some(1.0),
        ..fast()
    });
    let events = rt.block_on(stream(
        &drops.url(),
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 10, "stream": true, "ignore_eos": true}),
    ));
    assert_eq!(events.len(), 5, "cut half way");
    assert!(events.iter().all(|(_, p)| p != "[DONE]"));

    let stalls = start(SimSpec {
        stall_ms: Some(120.0),
        ..fast()
    });
    let events = rt.block_on(stream(
        &stalls.url(),
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 10, "stream": true, "ignore_eos": true}),
    ));
    // The stall holds the stream for 120 ms. Measured at the client, the
    // pause shows as a gap between events, or, when a busy machine let the
    // client read late, as a late start: the whole stream takes that long.
    let gaps: Vec<Duration> = events.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        events.last().unwrap().0 >= Duration::from_millis(110),
        "{:?} then {gaps:?}",
        events[0].0
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");

    let slow = start(SimSpec {
        startup_delay_ms: Some(300.0),
        ..fast()
    });
    rt.block_on(async {
        let health = |url: String| async move {
            reqwest::get(format!("{url}/health"))
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(health(slow.url()).await, 503);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(health(slow.url()).await, 200);
    });
}

#[test]
fn crash_after_ends_a_standalone_engine() {
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .args([
            "sim",
            "--port",
            &port.to_string(),
            "--crash-after",
            "2",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let rt = rt();
    let outcome = rt.block_on(async {
        let client = servegate::client::Client::new(&url, None).unwrap();
        client
            .wait_ready("/health", Duration::from_secs(10))
            .await
            .unwrap();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/completions"))
                .json(&json!({"prompt": "x", "max_tokens": 2}))
                .send()
                .await;
            statuses.push(r.map(|r| r.status().as_u16()).ok());
        }
        statuses
    });
    assert_eq!(&outcome[..2], &[Some(200), Some(200)]);
    assert_eq!(outcome[2], None, "the third request finds the engine gone");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "engine still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
}

/// `servegate probe` against the embedded engine: everything servegate
/// relies on is there; it sends no SSE comments and its tokenizer adds no BOS.
/// With `--log-prompts`, the engine records the prompts it was sent.
#[test]
fn probe_finds_everything_the_embedded_engine_supports() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("prompts.jsonl");
    let engine = crate::common::Sim::start(&["--log-prompts", log.to_str().unwrap()]);
    let out = std::process::Command::new(BIN)
        .args(["probe", &engine.url, "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    for f in report["findings"].as_array().unwrap() {
        let feature = f["feature"].as_str().unwrap();
        let want = if feature.starts_with("SSE comment") || feature.starts_with("tokenize prepends")
        {
            "no"
        } else {
            "yes"
        };
        assert_eq!(f["support"], want, "{feature}: {f}");
    }
    // Every completion prompt the probe sent is in the engine's log, as token ids.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["prompt_ids"] == json!([1, 2, 3])),
        "{lines:?}"
    );
    assert!(lines.len() >= 8, "{} prompts logged", lines.len());
}

/// What real clients (guidellm, the OpenAI SDKs) send: content parts,
/// `max_completion_tokens`, `n`, fields the engine does not use.
#[test]
fn the_chat_schema_real_clients_send_is_accepted() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let (s, r) = post(&url, "/v1/chat/completions", json!({
            "model": "m",
            "messages": [{"role": "system", "content": null},
                         {"role": "user", "content": [{"type": "text", "text": "Describe "},
                                                      {"type": "text", "text": "the cache."}]}],
            "max_completion_tokens": 3, "n": 1, "top_p": 0.9, "user": "someone",
            "ignore_eos": true
        })).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["usage"]["completion_tokens"], 3);
        // The parts are the text: the same prompt as the plain string.
        let (_, plain) = post(&url, "/v1/chat/completions", json!({
            "model": "m", "messages": [{"role": "system", "content": ""},
                                       {"role": "user", "content": "Describe the cache."}],
            "max_tokens": 3, "ignore_eos": true
        })).await;
        assert_eq!(r["usage"]["prompt_tokens"], plain["usage"]["prompt_tokens"]);
        let (s, r) = post(&url, "/v1/chat/completions", json!({
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "n": 2
        })).await;
        assert_eq!(s, 400);
        assert!(r["error"]["message"].as_str().unwrap().contains("n must be 1"), "{r}");
        let (s, r) = post(&url, "/v1/chat/completions", json!({
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        })).await;
        // A body the engine cannot read: 422, saying what it cannot read.
        assert_eq!(s, 422, "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("text parts only"), "{r}");
    });
}

/// Output is cut only between characters: a token ending inside a
/// multi-byte character waits for the rest, whole or streamed.
#[test]
fn generated_text_is_always_whole_characters() {
    let server = start(fast());
    let url = server.url();
    rt().block_on(async {
        let mut pieces = 0;
        for seed in 0..40u64 {
            let body = json!({"prompt": "The river", "max_tokens": 24, "temperature": 2.0,
                              "seed": seed, "ignore_eos": true});
            let (_, r) = post(&url, "/v1/completions", body.clone()).await;
            let text = r["choices"][0]["text"].as_str().unwrap();
            assert!(!text.contains('\u{FFFD}'), "seed {seed}: {text:?}");
            let mut streamed = body;
            streamed["stream"] = json!(true);
            let events = stream(&url, "/v1/completions", streamed).await;
            let joined: String = json_events(&events)
                .iter()
                .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
                .collect();
            assert!(!joined.contains('\u{FFFD}'), "seed {seed}: {joined:?}");
            assert_eq!(joined, text, "seed {seed}");
            pieces += 1;
        }
        assert_eq!(pieces, 40);
    });
}

/// A GPU engine in a build without `cuda` is refused where it is asked
/// for: `servegate sim --cuda` and a `sim = { cuda = true }` target both
/// exit 2 saying "no GPU", the target's error naming the file, line and key.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_engine_without_the_cuda_build_says_no_gpu() {
    let out = std::process::Command::new(BIN)
        .args(["sim", "--cuda", "--port", &free_port().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--cuda: no GPU"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
    std::fs::write(
        dir.path().join("servegate.toml"),
        "[targets.candidate]\nsim = { profile = \"engine\" }\n\
         [targets.baseline]\nsim = { profile = \"engine\", cuda = true }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scenarios/a.toml"),
        "[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--root", dir.path().to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("servegate.toml:4: key `targets.baseline.sim.cuda`: no GPU"),
        "{err}"
    );
}
