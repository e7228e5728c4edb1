//! Incremental Server-Sent Events decoder.
//!
//! Hand-written because the byte-to-event step must be fed raw network chunks
//! as they arrive (the caller timestamps each chunk before decoding) and must
//! survive any split: events across chunks, several events per chunk, CR, LF
//! or CRLF line ends (a CR at the end of a chunk may be half of a CRLF),
//! comments, multi-line `data:` and a last event with no closing blank line.

/// Feeds bytes in, yields the `data` payload of each complete event.
#[derive(Debug, Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes a chunk; returns the payloads of events completed by it.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let b = self.pending[i];
            if b == b'\n' || b == b'\r' {
                let end = i;
                if b == b'\r' {
                    // A CR as the last byte may be the first half of a CRLF: wait.
                    match self.pending.get(i + 1) {
                        None => break,
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                    }
                }
                let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
                self.line(&line, &mut events);
                i += 1;
                start = i;
            } else {
                i += 1;
            }
        }
        self.pending.drain(..start);
        events
    }

    /// Ends the stream: a trailing line and an event without a closing blank line still count.
    pub fn finish(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let text = String::from_utf8_lossy(&rest).into_owned();
            let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
            self.line(&text, &mut events);
        }
        self.dispatch(&mut events);
        events
    }

    /// True when bytes or a partial event are waiting for more input.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty() || self.has_data
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) {
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        // `event`, `id` and `retry` carry nothing an OpenAI stream needs.
    }

    fn dispatch(&mut self, events: &mut Vec<String>) {
        if self.has_data {
            events.push(std::mem::take(&mut self.data));
            self.has_data = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            out.extend(d.feed(&stream[last..c]));
            last = c;
        }
        out.extend(d.feed(&stream[last..]));
        out.extend(d.finish());
        out
    }

    const STREAM: &str = ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line one\ndata: line two\n\ndata:{\"b\":2}\r\rdata: [DONE]";

    fn expected() -> Vec<String> {
        vec![
            "{\"a\":1}".to_string(),
            "line one\nline two".to_string(),
            "{\"b\":2}".to_string(),
            "[DONE]".to_string(),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(decode_in_pieces(STREAM.as_bytes(), &[]), expected());
    }

    #[test]
    fn every_single_split_point() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                decode_in_pieces(bytes, &[cut]),
                expected(),
                "split at {cut}"
            );
        }
    }

    #[test]
    fn every_pair_of_split_points_and_byte_at_a_time() {
        let bytes = STREAM.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                assert_eq!(
                    decode_in_pieces(bytes, &[a, b]),
                    expected(),
                    "split at {a},{b}"
                );
            }
        }
        let all: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode_in_pieces(bytes, &all), expected());
    }

    #[test]
    fn events_complete_as_soon_as_their_blank_line_arrives() {
        let mut d = SseDecoder::new();
        assert!(d.feed(b"data: x\n").is_empty());
        assert!(d.has_partial());
        assert_eq!(d.feed(b"\ndata: y"), vec!["x"]);
        assert_eq!(d.finish(), vec!["y"]);
    }

    #[test]
    fn multibyte_text_split_inside_a_character() {
        let s = "data: {\"text\":\"é漢\"}\n\n".as_bytes();
        for cut in 0..=s.len() {
            assert_eq!(decode_in_pieces(s, &[cut]), vec!["{\"text\":\"é漢\"}"]);
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Renders events as an SSE stream with the given line ending, plus noise
    /// that must be ignored: comments, `event:`/`id:` fields, blank lines.
    fn render(events: &[Vec<String>], eol: &str, noise: bool) -> String {
        let mut s = String::new();
        for lines in events {
            if noise {
                s.push_str(&format!(": ping{eol}event: message{eol}id: 7{eol}"));
            }
            for line in lines {
                s.push_str(&format!("data: {line}{eol}"));
            }
            s.push_str(eol);
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any valid stream, cut into any pieces, decodes to the same events.
        #[test]
        fn any_split_of_a_valid_stream_decodes_the_same(
            events in prop::collection::vec(
                prop::collection::vec("[a-zA-Z0-9 {}\\[\\]\":,é漢]{0,12}", 1..3), 1..6),
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            noise in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stream = render(&events, eol, noise);
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort();
            let mut d = SseDecoder::new();
            let mut got = Vec::new();
            let mut last = 0;
            for p in points {
                got.extend(d.feed(&bytes[last..p]));
                last = p;
            }
            got.extend(d.feed(&bytes[last..]));
            got.extend(d.finish());
            let expected: Vec<String> = events.iter().map(|lines| lines.join("\n")).collect();
            prop_assert_eq!(got, expected);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut d = SseDecoder::new();
            for c in &chunks {
                let _ = d.feed(c);
            }
            let _ = d.finish();
        }
    }
}
