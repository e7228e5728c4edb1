//! Multi-turn sessions: which prompts make up each session, and how a turn
//! carries the conversation so far. Sending them is `loadgen`'s job.

use std::ops::Range;

use serde::Serialize;

use crate::workload::Prompt;

/// One message of a chat history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn user(content: &str) -> Self {
        Self {
            role: "user",
            content: content.to_string(),
        }
    }

    pub fn assistant(content: &str) -> Self {
        Self {
            role: "assistant",
            content: content.to_string(),
        }
    }
}

/// The prompts of each session, as index ranges into `prompts`: a session
/// starts at every prompt whose `turn` is 0. Empty when the prompts are not
/// conversations.
pub fn sessions(prompts: &[Prompt]) -> Vec<Range<usize>> {
    let starts: Vec<usize> = prompts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.turn == Some(0))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| start..starts.get(k + 1).copied().unwrap_or(prompts.len()))
        .collect()
}

/// The text prompt of a turn on `/v1/completions`: the history as a plain
/// transcript, then the new message and the assistant's cue. Each turn's
/// prompt begins with the previous turn's prompt and answer, so a server's
/// prefix cache can reuse the whole conversation so far.
pub fn transcript(history: &[Message], user: &str) -> String {
    let mut text = String::new();
    for m in history {
        match m.role {
            "assistant" => {
                text.push(' ');
                text.push_str(&m.content);
                text.push_str("\n\n");
            }
            _ => {
                text.push_str("User: ");
                text.push_str(&m.content);
                text.push_str("\n\nAssistant:");
            }
        }
    }
    text.push_str("User: ");
    text.push_str(user);
    text.push_str("\n\nAssistant:");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(text: &str, turn: Option<u32>) -> Prompt {
        Prompt {
            text: text.into(),
            tokens: None,
            max_tokens: None,
            arrival_s: None,
            turn,
        }
    }

    #[test]
    fn sessions_start_at_each_first_turn() {
        let prompts = [
            turn("a1", Some(0)),
            turn("a2", Some(1)),
            turn("a3", Some(2)),
            turn("b1", Some(0)),
            turn("c1", Some(0)),
            turn("c2", Some(1)),
        ];
        assert_eq!(sessions(&prompts), vec![0..3, 3..4, 4..6]);
        assert!(sessions(&[turn("x", None)]).is_empty());
    }

    #[test]
    fn each_turn_extends_the_previous_one() {
        let first = transcript(&[], "hello");
        assert_eq!(first, "User: hello\n\nAssistant:");
        let history = [Message::user("hello"), Message::assistant("hi there")];
        let second = transcript(&history, "how are you?");
        assert!(second.starts_with(&format!("{first} hi there\n\n")));
        assert!(second.ends_with("User: how are you?\n\nAssistant:"));
    }
}
