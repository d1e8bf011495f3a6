//! Incremental server-sent events parser (WHATWG HTML "event stream" parsing).
//!
//! Bytes go in as they arrive, split anywhere (inside a line, inside a UTF-8
//! character); complete events come out. Lines are buffered as bytes and decoded only
//! once complete, so a character split across chunks is never mangled. A line longer
//! than the limit is dropped (and counted) rather than buffered without bound.

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
    skipping: bool,
    oversized: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl SseParser {
    /// A parser that drops lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            after_cr: false,
            max_line,
            skipping: false,
            oversized: 0,
        }
    }

    /// Lines dropped for exceeding the limit.
    pub fn oversized_lines(&self) -> u64 {
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
            if self.has_data {
                let data = std::mem::take(&mut self.data);
                on_event(SseEvent { event: self.event.take(), data });
            }
            self.has_data = false;
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
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
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
        assert_eq!(p.oversized_lines(), 1);
    }
}
