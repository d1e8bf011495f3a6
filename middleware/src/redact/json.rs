//! Redacting JSON text as it was sent: every string and number (and every object key)
//! goes through the redactor, listed paths are dropped, and everything else (member
//! order, spacing, the escapes of untouched strings) is copied unchanged. There is no
//! parse into a tree and no re-serialisation.
//!
//! The scanner is strict: input that is not one JSON value (RFC 8259) is refused, and
//! the caller redacts it as plain text instead. So nothing outside a token the scanner
//! understood is ever copied unredacted.

use std::borrow::Cow;

use super::Redactor;

/// Nesting deeper than this is refused (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// The text is not a single, well-formed JSON value.
#[derive(Debug)]
pub(super) struct NotJson;

/// One step of the path to the value being scanned.
enum Seg<'a> {
    /// An object member, by its (unescaped) key.
    Key(Cow<'a, str>),
    /// An array element (paths name elements only as `*`).
    Elem,
}

struct Scan<'a> {
    r: &'a Redactor,
    text: &'a str,
    pos: usize,
    /// Only kept when the redactor removes paths.
    path: Vec<Seg<'a>>,
}

/// `text` redacted, or [`NotJson`].
pub(super) fn redact(r: &Redactor, text: &str) -> Result<String, NotJson> {
    let mut s = Scan { r, text, pos: 0, path: Vec::new() };
    let mut out = String::with_capacity(text.len());
    out.push_str(s.ws());
    s.value(&mut out, 0)?;
    out.push_str(s.ws());
    if s.pos != text.len() {
        return Err(NotJson);
    }
    Ok(out)
}

/// Append `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Serialising a `str` cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The whitespace at the cursor, consumed.
    fn ws(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn expect(&mut self, c: u8) -> Result<(), NotJson> {
        if self.peek() != Some(c) {
            return Err(NotJson);
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), NotJson> {
        match self.peek().ok_or(NotJson)? {
            b'{' => self.container(out, depth + 1, (b'{', b'}'), Self::key),
            b'[' => self.container(out, depth + 1, (b'[', b']'), |_, _| Ok(Seg::Elem)),
            b'"' => {
                let (raw, escaped) = self.string()?;
                self.put(out, &Self::unescape(raw, escaped)?, raw);
                Ok(())
            }
            b'-' | b'0'..=b'9' => {
                let raw = self.number()?;
                self.put(out, raw, raw);
                Ok(())
            }
            _ => {
                let rest = &self.text[self.pos..];
                let word = ["true", "false", "null"].into_iter().find(|w| rest.starts_with(w)).ok_or(NotJson)?;
                self.pos += word.len();
                out.push_str(word);
                Ok(())
            }
        }
    }

    /// A string token (quotes included) and whether it holds escapes.
    fn string(&mut self) -> Result<(&'a str, bool), NotJson> {
        let start = self.pos;
        self.expect(b'"')?;
        let b = self.text.as_bytes();
        let mut escaped = false;
        loop {
            // Plain text runs to the next quote or backslash; control characters must
            // be escaped in JSON, so none may lie in between.
            let run = memchr::memchr2(b'"', b'\\', &b[self.pos..]).ok_or(NotJson)?;
            // (`min` over the run vectorises; an early-exit search does not.)
            if b[self.pos..self.pos + run].iter().copied().min().is_some_and(|c| c < 0x20) {
                return Err(NotJson);
            }
            self.pos += run;
            match b[self.pos] {
                b'"' => break,
                _ => {
                    escaped = true;
                    match *b.get(self.pos + 1).ok_or(NotJson)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = b.get(self.pos + 2..self.pos + 6).ok_or(NotJson)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(NotJson);
                            }
                            self.pos += 6;
                        }
                        _ => return Err(NotJson),
                    }
                }
            }
        }
        self.pos += 1;
        Ok((&self.text[start..self.pos], escaped))
    }

    /// The text of a string token, unescaped.
    fn unescape(raw: &'a str, escaped: bool) -> Result<Cow<'a, str>, NotJson> {
        if escaped {
            // Lone surrogates (`"\ud800"`) are refused here, as serde_json refuses them.
            serde_json::from_str::<String>(raw).map(Cow::Owned).map_err(|_| NotJson)
        } else {
            Ok(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
    }

    /// `text`, the value of the token `raw`, redacted (as a JSON string), or `raw` as it
    /// was when no rule matches.
    fn put(&self, out: &mut String, text: &str, raw: &str) {
        match self.r.redacted(text) {
            Some(r) => push_json_str(out, &r),
            None => out.push_str(raw),
        }
    }

    fn number(&mut self) -> Result<&'a str, NotJson> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.pos += 1;
            }
            if s.pos == from { Err(NotJson) } else { Ok(()) }
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            digits(self)?;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self)?;
        }
        Ok(&self.text[start..self.pos])
    }

    /// True when the value at the current path is to be dropped.
    fn removed(&self) -> bool {
        self.r.remove.iter().any(|p| {
            p.len() == self.path.len()
                && p.iter().zip(&self.path).all(|(want, seg)| match seg {
                    Seg::Key(k) => want == "*" || want == k,
                    Seg::Elem => want == "*",
                })
        })
    }

    /// The value at the cursor, into `out`, or (when its path is removed) checked and
    /// dropped. Returns whether it was kept.
    fn member_value(&mut self, out: &mut String, seg: Seg<'a>, depth: usize) -> Result<bool, NotJson> {
        if self.r.remove.is_empty() {
            self.value(out, depth)?;
            return Ok(true);
        }
        self.path.push(seg);
        let kept = !self.removed();
        if kept {
            self.value(out, depth)?;
        } else {
            self.value(&mut String::new(), depth)?;
        }
        self.path.pop();
        Ok(kept)
    }

    /// An object or an array: `open`, members separated by commas, `close`. `head`
    /// scans what precedes a member's value (an object's key and colon), writes it, and
    /// names the member's step in the path.
    fn container(
        &mut self,
        out: &mut String,
        depth: usize,
        (open, close): (u8, u8),
        head: fn(&mut Self, &mut String) -> Result<Seg<'a>, NotJson>,
    ) -> Result<(), NotJson> {
        if depth > MAX_DEPTH {
            return Err(NotJson);
        }
        self.expect(open)?;
        out.push(char::from(open));
        let mut lead = self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            out.push_str(lead);
            out.push(char::from(close));
            return Ok(());
        }
        let mut first = true;
        loop {
            // Written before the member is known to be kept, taken back if it is not.
            let mark = out.len();
            if !first {
                out.push(',');
            }
            out.push_str(lead);
            let seg = head(self, out)?;
            if self.member_value(out, seg, depth)? {
                first = false;
                out.push_str(self.ws());
            } else {
                out.truncate(mark);
                self.ws();
            }
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    lead = self.ws();
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    out.push(char::from(close));
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// An object member's key (redacted like any string) and colon.
    fn key(&mut self, out: &mut String) -> Result<Seg<'a>, NotJson> {
        let (raw, escaped) = self.string()?;
        let key = Self::unescape(raw, escaped)?;
        self.put(out, &key, raw);
        out.push_str(self.ws());
        self.expect(b':')?;
        out.push(':');
        out.push_str(self.ws());
        Ok(Seg::Key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn builtin() -> Redactor {
        Redactor::builtin()
    }

    #[test]
    fn untouched_json_is_copied_byte_for_byte() {
        let text = "{ \"model\" : \"m\",\n  \"messages\": [ {\"role\":\"user\", \"content\": \"caf\\u00e9 \\\"ok\\\"\"} ],\n \"n\": -1.5e3, \"t\": true, \"z\": null, \"e\": {}, \"a\": [ ] }\n";
        assert_eq!(redact(&builtin(), text).unwrap(), text);
    }

    #[test]
    fn strings_numbers_keys_and_escaped_text_are_redacted() {
        let text =
            r#"{"to":"mail a@b.jp now","a\u0040b.jp":1,"card":4111111111111111,"esc":"x\u0040y.co.jp","k":"ok"}"#;
        let out = redact(&builtin(), text).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["to"], "mail [REDACTED:email] now");
        assert_eq!(v["[REDACTED:email]"], 1);
        assert_eq!(v["card"], "[REDACTED:card]");
        assert_eq!(v["esc"], "[REDACTED:email]");
        assert!(out.ends_with(r#""k":"ok"}"#), "{out}");
    }

    #[test]
    fn removed_paths_take_their_separators_with_them() {
        let r = builtin().remove_json_path("user").remove_json_path("messages.*.name").remove_json_path("tags.*");
        let cases = [
            (r#"{"user":"u","model":"m"}"#, r#"{"model":"m"}"#),
            (r#"{"model":"m", "user":"u"}"#, r#"{"model":"m"}"#),
            (r#"{"a":1, "user":{"x":[1]}, "b":2}"#, r#"{"a":1, "b":2}"#),
            (r#"{"user":"u"}"#, r#"{}"#),
            (
                r#"{"messages":[{"name":"Taro","content":"hi"},{"content":"yo","name":"Hanako"}]}"#,
                r#"{"messages":[{"content":"hi"},{"content":"yo"}]}"#,
            ),
            (r#"{"tags":["a","b"],"n":1}"#, r#"{"tags":[],"n":1}"#),
            (r#"[{"user":"nested, not at the root"}]"#, r#"[{"user":"nested, not at the root"}]"#),
        ];
        for (text, want) in cases {
            assert_eq!(redact(&r, text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn anything_but_one_json_value_is_refused() {
        let r = builtin();
        for text in [
            "",
            "   ",
            "{\"a\": taro@example.jp}",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1} trailing",
            "\"unterminated",
            "\"bad \\x escape\"",
            "\"lone \\ud800 surrogate\"",
            "\"control \u{1} char\"",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "{1:2}",
        ] {
            assert!(redact(&r, text).is_err(), "accepted {text:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(redact(&r, &deep).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(redact(&r, &ok).unwrap(), ok);
    }

    #[test]
    fn agrees_with_serde_json_on_what_the_value_is() {
        let r = builtin().remove_json_path("drop");
        let v = json!({"s": "plain", "q": "quote \" and \\ and \n", "u": "日本語 テキスト", "n": [0, -0.5, 1e-7, 12345678901234567890u64],
            "drop": {"deep": [1, 2]}, "o": {"drop": "kept: not at the root"}});
        for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            let back: Value = serde_json::from_str(&redact(&r, &text).unwrap()).unwrap();
            let mut want = v.clone();
            want.as_object_mut().unwrap().remove("drop");
            assert_eq!(back, want);
        }
    }
}
