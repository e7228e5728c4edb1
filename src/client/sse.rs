//! Incremental Server-Sent Events decoder.
//!
//! Hand-written because the byte-to-event step must be fed raw network chunks
//! as they arrive (the caller timestamps each chunk before decoding) and must
//! survive any split: events across chunks, several events per chunk, CR, LF
//! or CRLF line ends (a CR at the end of a chunk may be half of a CRLF),
//! comments, multi-line `data:` and a last event with no closing blank line.
//!
//! Work is linear in the bytes fed: each byte is searched for a line end
//! once, however many chunks a long line arrives in. A line or an event
//! larger than the decoder's limit is an error, so a server that never ends a
//! line cannot make the client hold gigabytes.

/// The longest line, and the largest event, a decoder accepts unless told otherwise.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// Why a stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SseError {
    #[error("stream line longer than {}", human_bytes(*.0))]
    LineTooLong(usize),
    #[error("stream event larger than {}", human_bytes(*.0))]
    EventTooLarge(usize),
}

/// `64 MB` for whole mebibytes, else bytes: limits read the way they were set.
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Feeds bytes in, yields the `data` payload of each complete event.
#[derive(Debug)]
pub struct SseDecoder {
    pending: Vec<u8>,
    /// How far into `pending` line ends were already searched for.
    scanned: usize,
    data: String,
    has_data: bool,
    max_line: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE_BYTES)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that refuses lines (and events) longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            pending: Vec::new(),
            scanned: 0,
            data: String::new(),
            has_data: false,
            max_line,
        }
    }

    /// Consumes a chunk; returns the payloads of events completed by it.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        let mut scanned_to = self.pending.len();
        while let Some(off) = self.pending[i..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = i + off;
            let mut next = end + 1;
            if self.pending[end] == b'\r' {
                // A CR as the last byte may be the first half of a CRLF: wait.
                match self.pending.get(next) {
                    None => {
                        scanned_to = end;
                        break;
                    }
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                }
            }
            if end - start > self.max_line {
                return Err(SseError::LineTooLong(self.max_line));
            }
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            self.line(&line, &mut events)?;
            start = next;
            i = next;
        }
        // The unfinished line (less a CR that may be half of a CRLF).
        if scanned_to - start > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        if start > 0 {
            self.pending.drain(..start);
        }
        self.scanned = scanned_to - start;
        Ok(events)
    }

    /// Ends the stream: a trailing line and an event without a closing blank line still count.
    pub fn finish(&mut self) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.scanned = 0;
            let text = String::from_utf8_lossy(&rest).into_owned();
            let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
            self.line(&text, &mut events)?;
        }
        self.dispatch(&mut events);
        Ok(events)
    }

    /// True when bytes or a partial event are waiting for more input.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty() || self.has_data
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            // Many `data:` lines without a blank one would grow one event forever.
            if self.data.len() + usize::from(self.has_data) + value.len() > self.max_line {
                return Err(SseError::EventTooLarge(self.max_line));
            }
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        // `event`, `id` and `retry` carry nothing an OpenAI stream needs.
        Ok(())
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
            out.extend(d.feed(&stream[last..c]).unwrap());
            last = c;
        }
        out.extend(d.feed(&stream[last..]).unwrap());
        out.extend(d.finish().unwrap());
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
        assert!(d.feed(b"data: x\n").unwrap().is_empty());
        assert!(d.has_partial());
        assert_eq!(d.feed(b"\ndata: y").unwrap(), vec!["x"]);
        assert_eq!(d.finish().unwrap(), vec!["y"]);
    }

    /// Re-searching the whole buffer on every chunk made one long line
    /// quadratic (a 100 MB line took ~23 s of CPU); each byte is now searched once.
    #[test]
    fn a_long_line_in_small_chunks_is_linear() {
        let mut d = SseDecoder::new();
        let started = std::time::Instant::now();
        assert!(d.feed(b"data: ").unwrap().is_empty());
        let piece = vec![b'x'; 1024];
        for _ in 0..(16 << 10) {
            assert!(d.feed(&piece).unwrap().is_empty());
        }
        let events = d.feed(b"\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].len(), 16 << 20);
        // Quadratic, this is ~130 GB of searching (minutes); linear, milliseconds.
        let took = started.elapsed();
        assert!(took.as_secs_f64() < 5.0, "16 MB line took {took:?}");
    }

    #[test]
    fn lines_and_events_past_the_limit_are_errors() {
        let mut d = SseDecoder::with_max_line(16);
        assert_eq!(d.feed(b"data: 0123456789").unwrap(), Vec::<String>::new());
        assert_eq!(d.feed(b"x").unwrap_err(), SseError::LineTooLong(16));
        // A complete line in one chunk is held to the same limit.
        let mut d = SseDecoder::with_max_line(16);
        assert_eq!(
            d.feed(b"data: 0123456789ab\n").unwrap_err(),
            SseError::LineTooLong(16)
        );
        // Exactly the limit, even with a CR waiting for its LF, is fine.
        let mut d = SseDecoder::with_max_line(16);
        assert!(d.feed(b"data: 0123456789\r").unwrap().is_empty());
        assert_eq!(d.feed(b"\n\n").unwrap(), vec!["0123456789"]);
        // Short lines that never end their event still add up.
        let mut d = SseDecoder::with_max_line(16);
        assert!(d.feed(b"data: 01234\ndata: 56789\n").unwrap().is_empty());
        assert_eq!(
            d.feed(b"data: abcdef\n").unwrap_err(),
            SseError::EventTooLarge(16)
        );
        assert_eq!(
            SseError::LineTooLong(DEFAULT_MAX_LINE_BYTES).to_string(),
            "stream line longer than 64 MB"
        );
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
        #![proptest_config(ProptestConfig::with_cases(256))]

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
                got.extend(d.feed(&bytes[last..p]).unwrap());
                last = p;
            }
            got.extend(d.feed(&bytes[last..]).unwrap());
            got.extend(d.finish().unwrap());
            let expected: Vec<String> = events.iter().map(|lines| lines.join("\n")).collect();
            prop_assert_eq!(got, expected);
        }

        /// Arbitrary bytes (line ends, CRs, invalid UTF-8 included) never
        /// panic the decoder, and where the chunks split them never changes
        /// what it decodes or whether a limit is hit.
        #[test]
        fn arbitrary_bytes_decode_the_same_however_split(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"\r\n:data ".to_vec())], 0..256),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
            max_line in prop_oneof![Just(DEFAULT_MAX_LINE_BYTES), 1usize..48],
        ) {
            let whole = {
                let mut d = SseDecoder::with_max_line(max_line);
                d.feed(&bytes).and_then(|mut ev| {
                    ev.extend(d.finish()?);
                    Ok(ev)
                })
            };
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort();
            points.push(bytes.len());
            let split = {
                let mut d = SseDecoder::with_max_line(max_line);
                let mut got = Vec::new();
                let mut last = 0;
                let mut outcome = Ok(());
                for p in points {
                    match d.feed(&bytes[last..p]) {
                        Ok(ev) => got.extend(ev),
                        Err(e) => { outcome = Err(e); break; }
                    }
                    last = p;
                }
                outcome.and_then(|()| {
                    got.extend(d.finish()?);
                    Ok(got)
                })
            };
            prop_assert_eq!(whole, split);
        }
    }
}
