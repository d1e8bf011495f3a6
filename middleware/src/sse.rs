//! Incremental server-sent events parser (WHATWG HTML "event stream" parsing).
//!
//! Bytes go in as they arrive, split anywhere (inside a line, inside a UTF-8
//! character); complete events come out. Lines are buffered as bytes and decoded only
//! once complete, so a character split across chunks is never mangled. A line, or an
//! event's data, longer than the limit is dropped (and counted) rather than buffered
//! without bound: an upstream that never ends a line or an event cannot make the layer
//! hold the stream in memory.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The parser state.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    after_cr: bool,
    max_line: usize,
    /// The rest of the current line is being dropped.
    skipping: bool,
    /// The current event's data outgrew the limit: it is dropped at its end.
    dropping_event: bool,
    oversized: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl SseParser {
    /// A parser that drops lines longer than `max_line` bytes, and events whose data
    /// (their `data:` lines joined) is longer than that.
    pub fn new(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            after_cr: false,
            max_line,
            skipping: false,
            dropping_event: false,
            oversized: 0,
        }
    }

    /// Lines and events dropped for exceeding the limit.
    pub fn dropped(&self) -> u64 {
        self.oversized
    }

    /// Feed bytes; `on_event` is called for each complete event.
    pub fn feed(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(SseEvent)) {
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    self.push_line_bytes(&bytes[..i]);
                    self.after_cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    self.end_line(on_event);
                }
                None => {
                    self.push_line_bytes(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn push_line_bytes(&mut self, b: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + b.len() > self.max_line {
            // A `data:` line that is dropped takes its event with it (counted once): the
            // rest of the event is not the event the server sent.
            let data_line = self.line.iter().chain(b).take(5).eq(b"data:");
            if data_line && !self.dropping_event {
                self.dropping_event = true;
                self.data.clear();
            }
            self.skipping = true;
            self.oversized += 1;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(b);
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(SseEvent)) {
        if self.skipping {
            self.skipping = false;
            return;
        }
        if self.line.is_empty() {
            if self.has_data && !self.dropping_event {
                let data = std::mem::take(&mut self.data);
                on_event(SseEvent { event: self.event.take(), data });
            }
            // The data buffer is empty here: taken, or cleared when its event was dropped.
            self.has_data = false;
            self.dropping_event = false;
            self.event = None;
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        let (field, value) = match line.find(':') {
            Some(0) => {
                self.line.clear();
                return; // comment
            }
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                if self.dropping_event {
                    // Already counted; the rest of the event goes with it.
                } else if self.data.len() + usize::from(self.has_data) + value.len() > self.max_line {
                    self.dropping_event = true;
                    self.oversized += 1;
                    self.data.clear();
                } else {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            let c = c.clamp(last, input.len());
            p.feed(&input[last..c], &mut |e| out.push(e));
            last = c;
        }
        out
    }

    const STREAM: &str =
        "event: delta\ndata: {\"t\":\"こんにちは\"}\n\n: comment\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n";

    #[test]
    fn parses_events() {
        let ev = parse_in_pieces(STREAM.as_bytes(), &[]);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].event.as_deref(), Some("delta"));
        assert_eq!(ev[0].data, "{\"t\":\"こんにちは\"}");
        assert_eq!(ev[1].data, "line1\nline2");
        assert_eq!(ev[2].data, "[DONE]");
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let whole = parse_in_pieces(STREAM.as_bytes(), &[]);
        let n = STREAM.len();
        for i in 0..n {
            for j in i..n {
                assert_eq!(parse_in_pieces(STREAM.as_bytes(), &[i, j]), whole, "cuts at {i},{j}");
            }
        }
    }

    #[test]
    fn oversized_lines_are_dropped() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        p.feed(format!("data: {}\n\ndata: ok\n\n", "x".repeat(100)).as_bytes(), &mut |e| out.push(e));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "ok");
        assert_eq!(p.dropped(), 1);
    }

    #[test]
    fn an_event_whose_data_outgrows_the_limit_is_dropped_whole() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        // Six short lines of one event: 35 bytes of data, none of them a long line.
        let long_event = "data: 12345\n".repeat(6);
        let input = format!("data: a\n\n{long_event}\n{long_event}data: more\n\ndata: b\ndata: c\n\n");
        p.feed(input.as_bytes(), &mut |e| out.push(e));
        let data: Vec<&str> = out.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a", "b\nc"]);
        assert_eq!(p.dropped(), 2);
        // A data line over the limit drops its whole event; a long comment line only itself.
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        let long = "x".repeat(40);
        p.feed(format!("data: a\ndata: {long}\ndata: b\n\n: {long}\ndata: c\n\n").as_bytes(), &mut |e| out.push(e));
        let data: Vec<&str> = out.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["c"]);
        assert_eq!(p.dropped(), 2);
        // At the limit exactly, an event is kept: 5 + 1 + 5 + 1 + 4 bytes.
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        p.feed(b"data: 12345\ndata: 12345\ndata: 1234\n\n", &mut |e| out.push(e));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 16);
        assert_eq!(p.dropped(), 0);
    }
}
