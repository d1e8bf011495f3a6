//! The fast reading of a record: the shape kiroku's journal writes, and nothing else.
//!
//! The journal writes compact JSON with the fields of every object in declaration
//! order (serde's derived `Serialize`). Read that shape with one forward pass, knowing
//! which key may come next, and serde's generic walk (matching every key against every
//! field name, a visitor per value) costs about four times scanning the bytes. This
//! reader returns `None` on anything it does not expect: whitespace, a key out of order
//! or unknown, an unusual number, an invalid escape, text that is not UTF-8, a field
//! of a newer minor version. The caller then reads the payload with serde, which gives
//! the answer and the error message. So this reader never decides that a payload is
//! bad; when it accepts one, it must read it exactly as serde would, which it does by
//! using the same leaf parsers (timestamps, chain ids, and serde_json itself for
//! floats) and is tested on every record the record tests generate and mutate.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{
    AuditRecord, BodySummary, Caller, Disclosure, GenAi, GenAiOperation, GenAiProvider, GenAiRequest, GenAiResponse,
    HttpExchange, OutputSource, Provenance, SafeguardDecision, Text, ToolCall, TraceContext, Watermark,
};
use crate::record::plain_run::plain_run;
use crate::record::{CaptureMode, GenAiUsage, Keyword, Outcome, SafeguardAction};

/// Read `bytes` if they have the journal's shape.
pub(crate) fn parse(bytes: &[u8]) -> Option<AuditRecord<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut c = Cursor { s: text, i: 0 };
    let r = record(&mut c)?;
    (c.i == text.len()).then_some(r)
}

/// A position in the payload text.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.s[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// A string that names one value of `T`.
    fn keyword<T: Keyword>(&mut self) -> Option<T> {
        T::from_name(&self.text()?)
    }

    /// A JSON string: borrowed when it holds no escape.
    fn text(&mut self) -> Option<Text<'a>> {
        self.eat(b'"')?;
        let bytes = self.s.as_bytes();
        let start = self.i;
        let mut j = start + plain_run(&bytes[start..]);
        while let Some(&b) = bytes.get(j) {
            match b {
                b'"' => {
                    self.i = j + 1;
                    return Some(Text(Cow::Borrowed(&self.s[start..j])));
                }
                b'\\' => return self.escaped(start, j),
                0..0x20 => return None,
                _ => j += 1,
            }
        }
        None
    }

    /// The rest of a string that holds escapes, from `start`; the first escape at `at`.
    fn escaped(&mut self, start: usize, mut at: usize) -> Option<Text<'a>> {
        let bytes = self.s.as_bytes();
        let mut out = String::with_capacity(at - start + 16);
        let mut run = start;
        loop {
            match *bytes.get(at)? {
                b'"' => {
                    out.push_str(&self.s[run..at]);
                    self.i = at + 1;
                    return Some(Text(Cow::Owned(out)));
                }
                b'\\' => {
                    out.push_str(&self.s[run..at]);
                    let (ch, len) = self.escape(at)?;
                    out.push(ch);
                    at += len;
                    run = at;
                }
                0..0x20 => return None,
                _ => at += 1,
            }
        }
    }

    /// The escape at `at` (a backslash): the character and the escape's length.
    fn escape(&self, at: usize) -> Option<(char, usize)> {
        let bytes = self.s.as_bytes();
        let ch = match *bytes.get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4(at + 2)?;
                return match hi {
                    0xD800..0xDC00 => {
                        // A surrogate pair; anything else (a lone surrogate) is serde's to refuse.
                        if bytes.get(at + 6..at + 8)? != b"\\u" {
                            return None;
                        }
                        let lo = self.hex4(at + 8)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        let c = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                        Some((char::from_u32(c)?, 12))
                    }
                    0xDC00..0xE000 => None,
                    _ => Some((char::from_u32(u32::from(hi))?, 6)),
                };
            }
            _ => return None,
        };
        Some((ch, 2))
    }

    fn hex4(&self, at: usize) -> Option<u16> {
        let digits = self.s.get(at..at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(digits, 16).ok()
    }

    /// A JSON number's text (validated by whoever parses it).
    fn number_token(&mut self) -> &'a str {
        let start = self.i;
        let bytes = self.s.as_bytes();
        while bytes.get(self.i).is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// An unsigned integer written plainly (no sign, fraction, exponent or leading zero).
    fn u64(&mut self) -> Option<u64> {
        let t = self.number_token();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0')) {
            return None;
        }
        t.parse().ok()
    }

    /// A signed integer written plainly. `-0` is not one: serde_json reads it as the
    /// float `-0.0`, which an integer field refuses.
    fn i64(&mut self) -> Option<i64> {
        let t = self.number_token();
        let digits = t.strip_prefix('-').unwrap_or(t);
        let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if !(plain || t == "0") {
            return None;
        }
        t.parse().ok()
    }

    /// A float, parsed by serde_json itself (its rounding, its grammar).
    fn f64(&mut self) -> Option<f64> {
        serde_json::from_str(self.number_token()).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal("true").map(|()| true),
            b'f' => self.literal("false").map(|()| false),
            _ => None,
        }
    }

    /// `null` (as `None`), or a value read by `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            return self.literal("null").map(|()| None);
        }
        read(self).map(Some)
    }

    fn timestamp(&mut self) -> Option<crate::Timestamp> {
        self.text()?.parse().ok()
    }

    /// `[v, v, ...]`.
    fn array<T>(&mut self, mut read: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        if self.eat(b']').is_some() {
            return Some(out);
        }
        loop {
            out.push(read(self)?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// `{"k": v, ...}` with any keys, each value read by `read`; a repeated key keeps its
    /// last value, as serde's map does.
    fn map<V>(&mut self, mut read: impl FnMut(&mut Self) -> Option<V>) -> Option<BTreeMap<Text<'a>, V>> {
        self.eat(b'{')?;
        let mut out = BTreeMap::new();
        if self.eat(b'}').is_some() {
            return Some(out);
        }
        loop {
            let k = self.text()?;
            self.eat(b':')?;
            out.insert(k, read(self)?);
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// Any JSON value (the free-form `parameters`), read by serde_json itself, which also
    /// says where it ends. serde stops at 128 levels counted from the record's root, these
    /// values sit three levels down, and a parser started here would count from here:
    /// deeply nested values are left to serde.
    fn json_value(&mut self) -> Option<serde_json::Value> {
        let mut values = serde_json::Deserializer::from_str(&self.s[self.i..]).into_iter::<serde_json::Value>();
        let v = values.next()?.ok()?;
        self.i += values.byte_offset();
        (depth(&v) < 100).then_some(v)
    }

    /// An object, its fields read by `read` in the order they are declared, then its
    /// closing brace.
    fn object<T>(&mut self, read: impl FnOnce(&mut Fields<'_, 'a>) -> Option<T>) -> Option<T> {
        self.eat(b'{')?;
        let mut f = Fields { c: self, any: false };
        let v = read(&mut f)?;
        f.end()?;
        Some(v)
    }
}

/// How many arrays and objects deep a value goes.
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Reading one object's fields in declaration order.
struct Fields<'c, 'a> {
    c: &'c mut Cursor<'a>,
    /// A field was read (the next one follows a comma).
    any: bool,
}

impl<'a> Fields<'_, 'a> {
    /// The field `name` if it comes next: `Some(None)` when it does not (it is absent),
    /// `None` when its value is not what `read` expects.
    fn next<T>(&mut self, name: &str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<Option<T>> {
        let at = self.c.i;
        let rest = &self.c.s.as_bytes()[at..];
        let skip = usize::from(self.any);
        if self.any && rest.first() != Some(&b',') {
            return Some(None);
        }
        let key = rest.get(skip..)?;
        if key.len() < name.len() + 3
            || key[0] != b'"'
            || !same(&key[1..=name.len()], name.as_bytes())
            || key[name.len() + 1] != b'"'
            || key[name.len() + 2] != b':'
        {
            return Some(None);
        }
        self.c.i = at + skip + name.len() + 3;
        self.any = true;
        read(self.c).map(Some)
    }

    /// A field that must be there.
    fn required<T>(&mut self, name: &str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<T> {
        self.next(name, read)?
    }

    /// An `Option` field: absent or `null` is `None`.
    fn optional<T>(&mut self, name: &str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<Option<T>> {
        Some(self.next(name, |c| c.nullable(read))?.flatten())
    }

    /// A field with a default.
    fn or_default<T: Default>(&mut self, name: &str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<T> {
        Some(self.next(name, read)?.unwrap_or_default())
    }

    /// The end of the object: no other field may follow.
    fn end(self) -> Option<()> {
        self.c.eat(b'}')
    }
}

fn record<'a>(c: &mut Cursor<'a>) -> Option<AuditRecord<'a>> {
    c.object(|f| {
        Some(AuditRecord {
            schema_version: f.required("schema_version", Cursor::text)?,
            record_id: f.required("record_id", Cursor::text)?,
            chain_id: f.required("chain_id", |c| c.text()?.parse().ok())?,
            seq: f.required("seq", Cursor::u64)?,
            started_at: f.required("started_at", Cursor::timestamp)?,
            first_byte_at: f.optional("first_byte_at", Cursor::timestamp)?,
            finished_at: f.required("finished_at", Cursor::timestamp)?,
            http: f.required("http", http)?,
            caller: f.or_default("caller", caller)?,
            trace: f.or_default("trace", trace)?,
            gen_ai: f.or_default("gen_ai", gen_ai)?,
            provenance: f.or_default("provenance", provenance)?,
            output_sources: f.or_default("output_sources", |c| c.array(source))?,
            watermarks: f.or_default("watermarks", |c| c.array(watermark))?,
            digital_source_type: f.optional("digital_source_type", Cursor::text)?,
            disclosure: f.optional("disclosure", disclosure)?,
            safeguards: f.or_default("safeguards", |c| c.array(safeguard))?,
            records_lost_before: f.or_default("records_lost_before", Cursor::u64)?,
            attributes: f.or_default("attributes", |c| c.map(Cursor::text))?,
            extensions: BTreeMap::new(),
        })
    })
}

fn body<'a>(c: &mut Cursor<'a>) -> Option<BodySummary<'a>> {
    c.object(|f| {
        Some(BodySummary {
            content_type: f.optional("content_type", Cursor::text)?,
            bytes: f.required("bytes", Cursor::u64)?,
            blake3: f.optional("blake3", Cursor::text)?,
            capture: f.required("capture", Cursor::keyword::<CaptureMode>)?,
            captured: f.optional("captured", Cursor::text)?,
            truncated: f.or_default("truncated", Cursor::bool)?,
        })
    })
}

fn http<'a>(c: &mut Cursor<'a>) -> Option<HttpExchange<'a>> {
    c.object(|f| {
        Some(HttpExchange {
            method: f.required("method", Cursor::text)?,
            route: f.required("route", Cursor::text)?,
            status: f.optional("status", |c| u16::try_from(c.u64()?).ok())?,
            outcome: f.required("outcome", Cursor::keyword::<Outcome>)?,
            error: f.optional("error", Cursor::text)?,
            streaming: f.or_default("streaming", Cursor::bool)?,
            request: f.required("request", body)?,
            response: f.required("response", body)?,
        })
    })
}

fn caller<'a>(c: &mut Cursor<'a>) -> Option<Caller<'a>> {
    c.object(|f| {
        Some(Caller {
            subject: f.optional("subject", Cursor::text)?,
            tenant: f.optional("tenant", Cursor::text)?,
            client_addr: f.optional("client_addr", Cursor::text)?,
        })
    })
}

fn trace<'a>(c: &mut Cursor<'a>) -> Option<TraceContext<'a>> {
    c.object(|f| {
        Some(TraceContext {
            trace_id: f.optional("trace_id", Cursor::text)?,
            span_id: f.optional("span_id", Cursor::text)?,
        })
    })
}

fn name_only<'a>(c: &mut Cursor<'a>) -> Option<Option<Text<'a>>> {
    c.object(|f| f.optional("name", Cursor::text))
}

fn gen_ai<'a>(c: &mut Cursor<'a>) -> Option<GenAi<'a>> {
    c.object(|f| {
        Some(GenAi {
            operation: GenAiOperation { name: f.or_default("operation", name_only)? },
            provider: GenAiProvider { name: f.or_default("provider", name_only)? },
            request: f.or_default("request", request)?,
            response: f.or_default("response", response)?,
            usage: f.or_default("usage", usage)?,
        })
    })
}

fn request<'a>(c: &mut Cursor<'a>) -> Option<GenAiRequest<'a>> {
    c.object(|f| {
        Some(GenAiRequest {
            model: f.optional("model", Cursor::text)?,
            temperature: f.optional("temperature", Cursor::f64)?,
            top_p: f.optional("top_p", Cursor::f64)?,
            top_k: f.optional("top_k", Cursor::f64)?,
            max_tokens: f.optional("max_tokens", Cursor::u64)?,
            seed: f.optional("seed", Cursor::i64)?,
            frequency_penalty: f.optional("frequency_penalty", Cursor::f64)?,
            presence_penalty: f.optional("presence_penalty", Cursor::f64)?,
            stop_sequences: f.or_default("stop_sequences", |c| c.array(Cursor::text))?,
            choice_count: f.optional("choice_count", Cursor::u64)?,
            stream: f.optional("stream", Cursor::bool)?,
            tools: f.or_default("tools", |c| c.array(Cursor::text))?,
        })
    })
}

fn response<'a>(c: &mut Cursor<'a>) -> Option<GenAiResponse<'a>> {
    c.object(|f| {
        Some(GenAiResponse {
            id: f.optional("id", Cursor::text)?,
            model: f.optional("model", Cursor::text)?,
            finish_reasons: f.or_default("finish_reasons", |c| c.array(Cursor::text))?,
        })
    })
}

fn usage(c: &mut Cursor<'_>) -> Option<GenAiUsage> {
    c.object(|f| {
        Some(GenAiUsage {
            input_tokens: f.optional("input_tokens", Cursor::u64)?,
            output_tokens: f.optional("output_tokens", Cursor::u64)?,
            cached_input_tokens: f.optional("cached_input_tokens", Cursor::u64)?,
        })
    })
}

fn provenance<'a>(c: &mut Cursor<'a>) -> Option<Provenance<'a>> {
    c.object(|f| {
        Some(Provenance {
            model_version: f.optional("model_version", Cursor::text)?,
            model_digest: f.optional("model_digest", Cursor::text)?,
            deployment: f.optional("deployment", Cursor::text)?,
            system_prompt_digest: f.optional("system_prompt_digest", Cursor::text)?,
            output_digest: f.optional("output_digest", Cursor::text)?,
            tool_calls: f.or_default("tool_calls", |c| c.array(tool_call))?,
            parameters: f.or_default("parameters", |c| {
                Some(c.map(Cursor::json_value)?.into_iter().map(|(k, v)| (k.into_owned(), v)).collect())
            })?,
        })
    })
}

fn tool_call<'a>(c: &mut Cursor<'a>) -> Option<ToolCall<'a>> {
    c.object(|f| {
        Some(ToolCall {
            id: f.optional("id", Cursor::text)?,
            name: f.required("name", Cursor::text)?,
            arguments_digest: f.optional("arguments_digest", Cursor::text)?,
        })
    })
}

fn source<'a>(c: &mut Cursor<'a>) -> Option<OutputSource<'a>> {
    c.object(|f| {
        Some(OutputSource {
            uri: f.required("uri", Cursor::text)?,
            title: f.optional("title", Cursor::text)?,
            content_digest: f.optional("content_digest", Cursor::text)?,
            locator: f.optional("locator", Cursor::text)?,
            score: f.optional("score", Cursor::f64)?,
            license: f.optional("license", Cursor::text)?,
            rights_holder: f.optional("rights_holder", Cursor::text)?,
            retrieved_at: f.optional("retrieved_at", Cursor::timestamp)?,
        })
    })
}

fn watermark<'a>(c: &mut Cursor<'a>) -> Option<Watermark<'a>> {
    c.object(|f| {
        Some(Watermark {
            scheme: f.required("scheme", Cursor::text)?,
            key_id: f.optional("key_id", Cursor::text)?,
            payload_digest: f.optional("payload_digest", Cursor::text)?,
            manifest_digest: f.optional("manifest_digest", Cursor::text)?,
            applied_by: f.optional("applied_by", Cursor::text)?,
            detector: f.optional("detector", Cursor::text)?,
            detector_score: f.optional("detector_score", Cursor::f64)?,
        })
    })
}

fn disclosure<'a>(c: &mut Cursor<'a>) -> Option<Disclosure<'a>> {
    c.object(|f| {
        Some(Disclosure { method: f.required("method", Cursor::text)?, text: f.optional("text", Cursor::text)? })
    })
}

fn safeguard<'a>(c: &mut Cursor<'a>) -> Option<SafeguardDecision<'a>> {
    c.object(|f| {
        Some(SafeguardDecision {
            policy_id: f.required("policy_id", Cursor::text)?,
            policy_version: f.optional("policy_version", Cursor::text)?,
            action: f.required("action", Cursor::keyword::<SafeguardAction>)?,
            stage: f.optional("stage", Cursor::text)?,
            category: f.optional("category", Cursor::text)?,
            score: f.optional("score", Cursor::f64)?,
        })
    })
}

/// Byte-wise equality of two short slices of the same length, inline: a key name is a
/// few bytes, and a call to `memcmp` per key cost more than the comparison.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}
