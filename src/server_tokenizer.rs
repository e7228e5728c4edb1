//! A server's own tokenizer, through vLLM's `POST /tokenize` and
//! `POST /detokenize`: generated prompts are then exact in the tokens the
//! server counts, with no tokenizer file on the client's side.
//!
//! Prompts are made before measuring, by code that is not async (the
//! prompt builders also serve local tokenizers), so each call blocks on a
//! runtime of its own, from a thread of its own: that works whether or not
//! the caller is itself inside a runtime.

use std::time::Duration;

use serde_json::{json, Value};

use crate::client::Client;
use crate::tokenizer::Codec;

/// How long one tokenize or detokenize call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ServerTokenizer {
    client: Client,
    model: String,
    /// `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerTokenizer {
    /// A tokenizer for `model` on the server at `client`'s URL; fails when
    /// the server does not tokenize (the first call is a test).
    pub fn connect(client: Client, model: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let tokenizer = Self {
            client,
            model: model.to_string(),
            runtime: Some(runtime),
        };
        tokenizer.encode_text("tokenize test").map_err(|e| {
            format!(
                "{} gives no tokenizer through /tokenize ({e})",
                tokenizer.client.base_url()
            )
        })?;
        Ok(tokenizer)
    }

    fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let runtime = self.runtime.as_ref().expect("a runtime until dropped");
        std::thread::scope(|s| {
            s.spawn(|| {
                runtime
                    .block_on(self.client.post_json(path, &body, CALL_TIMEOUT))
                    .map_err(|f| f.message)
            })
            .join()
            .unwrap_or_else(|_| Err(format!("POST {path}: the call panicked")))
        })
    }
}

impl Drop for ServerTokenizer {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a caller inside another runtime
        // may not do; this does not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Codec for ServerTokenizer {
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, String> {
        let answer = self.call(
            "tokenize",
            json!({"model": self.model, "prompt": text, "add_special_tokens": false}),
        )?;
        ids(&answer["tokens"])
            .ok_or_else(|| format!("/tokenize answered no `tokens` list: {answer}"))
    }

    fn decode_ids(&self, ids: &[u32]) -> Result<String, String> {
        let answer = self.call("detokenize", json!({"model": self.model, "tokens": ids}))?;
        answer["prompt"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("/detokenize answered no `prompt` text: {answer}"))
    }
}

fn ids(list: &Value) -> Option<Vec<u32>> {
    list.as_array()?
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}
