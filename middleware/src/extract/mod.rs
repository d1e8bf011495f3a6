//! Extractors: provenance from request and response bodies, for when the inner service
//! does not annotate.
//!
//! An extractor reads the JSON of a request and of a (non-streamed) response, or the
//! events of a streamed response, and fills record fields that are still empty:
//! annotations made by the application always win. Extraction runs on the journal's
//! writer thread for whole bodies, and incrementally on the response path for streams
//! (one small JSON document per event), so a streamed completion yields the same
//! provenance as a non-streamed one.
//!
//! Built in: [`OpenAiExtractor`] (chat completions, completions, embeddings, responses,
//! moderations) and [`AnthropicExtractor`] (messages). Both also record the provider's
//! own safeguard decisions (content filters, refusals, moderation verdicts) when the
//! application records none. Implement [`Extractor`] for other APIs.

mod anthropic;
mod openai;
mod safeguards;

pub use anthropic::AnthropicExtractor;
pub use openai::OpenAiExtractor;

use kiroku_schemas::AuditRecord;
use kiroku_schemas::digest::to_hex;
use serde_json::Value;

use crate::sse::SseEvent;

/// Reads provenance out of one API's request and response bodies.
pub trait Extractor: Send + Sync + 'static {
    /// True when this extractor understands requests to `route` (the path).
    fn handles(&self, route: &str) -> bool;
    /// Fill request-side fields from the request JSON.
    fn request(&self, route: &str, body: &Value, rec: &mut AuditRecord);
    /// Fill response-side fields from a non-streamed response JSON.
    fn response(&self, route: &str, body: &Value, rec: &mut AuditRecord);
    /// A parser for a streamed response's events.
    fn stream(&self, route: &str) -> Box<dyn StreamExtractor>;
}

/// Incremental extraction from a streamed response.
pub trait StreamExtractor: Send {
    /// One server-sent event.
    fn event(&mut self, ev: &SseEvent);
    /// True once the stream's terminal event has been seen (`[DONE]`, `message_stop`,
    /// `response.completed`): the client has everything.
    fn is_done(&self) -> bool;
    /// Fill the record from what the stream carried.
    fn finish(self: Box<Self>, rec: &mut AuditRecord);
}

/// The extractors used when none are configured.
pub fn defaults() -> Vec<std::sync::Arc<dyn Extractor>> {
    vec![std::sync::Arc::new(OpenAiExtractor), std::sync::Arc::new(AnthropicExtractor)]
}

/// An error the API sent inside a stream that began with `200 OK` (an overloaded model,
/// a server error mid-answer): the inference failed, though its HTTP status and the
/// stream's end look fine. `err` is the API's error object (`type` or `code`, `message`).
pub(crate) fn stream_error(rec: &mut AuditRecord, err: &Value) {
    let field = |k: &str| {
        err.get(k).and_then(|v| v.as_str().map(str::to_owned).or_else(|| (!v.is_null()).then(|| v.to_string())))
    };
    // Anthropic and chat completions name the kind in `type`; the Responses API's
    // `error` event is of type "error" and names it in `code`.
    let kind = field("type").filter(|t| t != "error").or_else(|| field("code")).unwrap_or_else(|| "error".into());
    let mut text = format!("the stream carried an error: {kind}");
    if let Some(m) = field("message") {
        text.push_str(": ");
        // The API's message is kept short: it is a reason, not a body.
        text.extend(m.chars().take(512));
    }
    rec.http.outcome = kiroku_schemas::record::Outcome::Error;
    rec.http.error = Some(match rec.http.error.take() {
        Some(e) => format!("{e}; {text}"),
        None => text,
    });
}

pub(crate) fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

pub(crate) fn fill_vec<T>(slot: &mut Vec<T>, v: Vec<T>) {
    if slot.is_empty() {
        *slot = v;
    }
}

pub(crate) fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub(crate) fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Running blake3 of generated text, fed piece by piece. The first KiB is kept as
/// text and hashed at the end; only a longer text gets a hasher (about 2 KiB, held for
/// the stream's life), so thousands of open streams with short answers stay small.
#[derive(Default)]
pub(crate) struct TextDigest {
    head: Vec<u8>,
    hasher: Option<Box<blake3::Hasher>>,
    seen: bool,
}

/// Text kept before a [`TextDigest`] switches to a hasher.
const TEXT_HEAD: usize = 1024;

impl TextDigest {
    pub(crate) fn push(&mut self, s: &str) {
        self.seen = true;
        match &mut self.hasher {
            Some(h) => {
                h.update(s.as_bytes());
            }
            None if self.head.len() + s.len() <= TEXT_HEAD => self.head.extend_from_slice(s.as_bytes()),
            None => {
                let mut h = Box::<blake3::Hasher>::default();
                h.update(&self.head);
                h.update(s.as_bytes());
                self.head = Vec::new();
                self.hasher = Some(h);
            }
        }
    }

    pub(crate) fn hex(&self) -> Option<String> {
        if !self.seen {
            return None;
        }
        let digest = match &self.hasher {
            Some(h) => h.finalize(),
            None => blake3::hash(&self.head),
        };
        Some(to_hex(digest.as_bytes()))
    }
}

/// Digest of a whole text.
pub(crate) fn text_digest(s: &str) -> String {
    kiroku_schemas::digest::blake3_hex(s.as_bytes())
}

/// Request parameters shared by the OpenAI- and Anthropic-style APIs.
pub(crate) fn common_request(body: &Value, rec: &mut AuditRecord) {
    let r = &mut rec.gen_ai.request;
    let parameters = &mut rec.provenance.parameters;
    // Each typed parameter once: its value for the field, and if it was sent in a form
    // the field cannot hold (a seed above i64::MAX, `max_tokens: 100.0`, a temperature
    // as a string), kept as sent, so the record never says less than the request did.
    let mut param = |key: &str, fits: fn(&Value) -> bool| {
        let v = body.get(key);
        if let Some(v) = v.filter(|v| !v.is_null() && !fits(v)) {
            parameters.entry(key.to_owned()).or_insert_with(|| v.clone());
        }
        v
    };
    fill(&mut r.model, param("model", Value::is_string).and_then(Value::as_str).map(str::to_owned));
    fill(&mut r.temperature, param("temperature", Value::is_number).and_then(Value::as_f64));
    fill(&mut r.top_p, param("top_p", Value::is_number).and_then(Value::as_f64));
    fill(&mut r.top_k, param("top_k", Value::is_number).and_then(Value::as_f64));
    // All three read (and kept if unfit), the first that fits used.
    let max_tokens = [
        param("max_tokens", Value::is_u64),
        param("max_completion_tokens", Value::is_u64),
        param("max_output_tokens", Value::is_u64),
    ];
    fill(&mut r.max_tokens, max_tokens.into_iter().find_map(|v| v.and_then(Value::as_u64)));
    fill(&mut r.seed, param("seed", Value::is_i64).and_then(Value::as_i64));
    fill(&mut r.frequency_penalty, param("frequency_penalty", Value::is_number).and_then(Value::as_f64));
    fill(&mut r.presence_penalty, param("presence_penalty", Value::is_number).and_then(Value::as_f64));
    fill(&mut r.choice_count, param("n", Value::is_u64).and_then(Value::as_u64));
    fill(&mut r.stream, param("stream", Value::is_boolean).and_then(Value::as_bool));
    let (stop, stop_sequences) = (param("stop", text_or_texts), param("stop_sequences", text_or_texts));
    let stops = match stop.or(stop_sequences) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    fill_vec(&mut r.stop_sequences, stops);
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    t.pointer("/function/name").or_else(|| t.get("name")).and_then(Value::as_str).map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    fill_vec(&mut r.tools, tools);
    for key in ["response_format", "reasoning_effort", "tool_choice", "logit_bias", "user_tier", "service_tier"] {
        if let Some(v) = body.get(key) {
            rec.provenance.parameters.entry(key.to_owned()).or_insert_with(|| v.clone());
        }
    }
}

/// A string, or an array of strings (stop sequences).
fn text_or_texts(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(a) => a.iter().all(Value::is_string),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_digest_is_the_blake3_of_the_whole_text_however_it_arrives() {
        let text: String = (0..3000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        for piece in [1, 5, 1023, 1024, 1025, 3000] {
            let mut d = TextDigest::default();
            for chunk in text.as_bytes().chunks(piece) {
                d.push(std::str::from_utf8(chunk).unwrap());
            }
            assert_eq!(d.hex(), Some(to_hex(blake3::hash(text.as_bytes()).as_bytes())), "pieces of {piece}");
        }
        assert_eq!(TextDigest::default().hex(), None);
        let mut empty = TextDigest::default();
        empty.push("");
        assert_eq!(empty.hex(), Some(to_hex(blake3::hash(b"").as_bytes())));
    }
}
