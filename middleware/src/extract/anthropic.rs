//! Anthropic-compatible messages API (`/v1/messages`).

use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::ToolCall;
use serde_json::Value;

use super::{Extractor, StreamExtractor, TextDigest, common_request, fill, fill_vec, str_of, text_digest, u64_of};
use crate::sse::SseEvent;

/// Extracts provenance from Anthropic-compatible `/v1/messages` requests and
/// responses, streamed or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicExtractor;

impl Extractor for AnthropicExtractor {
    fn handles(&self, route: &str) -> bool {
        route.ends_with("/messages")
    }

    fn request(&self, _route: &str, body: &Value, rec: &mut AuditRecord) {
        fill(&mut rec.gen_ai.operation.name, Some("chat".to_owned()));
        fill(&mut rec.gen_ai.provider.name, Some("anthropic".to_owned()));
        common_request(body, rec);
        let system = match body.get("system") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => {
                Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect())
            }
            _ => None,
        };
        fill(&mut rec.provenance.system_prompt_digest, system.map(|s| text_digest(&s)));
    }

    fn response(&self, _route: &str, body: &Value, rec: &mut AuditRecord) {
        message(body, rec);
        let mut text = String::new();
        let mut calls = Vec::new();
        for block in body.get("content").and_then(Value::as_array).into_iter().flatten() {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
                Some("tool_use") => calls.push(ToolCall {
                    id: str_of(block, "id"),
                    name: str_of(block, "name").unwrap_or_default(),
                    arguments_digest: block.get("input").map(input_digest),
                }),
                _ => {}
            }
        }
        fill_vec(&mut rec.provenance.tool_calls, calls);
        if body.get("content").is_some() {
            fill(&mut rec.provenance.output_digest, Some(text_digest(&text)));
        }
    }

    fn stream(&self, _route: &str) -> Box<dyn StreamExtractor> {
        Box::new(AnthropicStream::default())
    }
}

/// The digest of a tool call's input: of its compact JSON with every object's keys in
/// sorted order, so a streamed input (its JSON text in pieces, spaced and ordered as the
/// model wrote it) and the same input in a whole message agree. The keys are sorted here,
/// not left to serde_json's map: with its `preserve_order` feature, which any crate in
/// an application's build may turn on, the map keeps the order the model wrote, and the
/// same input would get another digest.
fn input_digest(input: &Value) -> String {
    let mut text = String::new();
    sorted_json(input, &mut text);
    text_digest(&text)
}

/// `v` as compact JSON, objects' keys sorted (by their UTF-8 bytes).
fn sorted_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                sorted_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                sorted_json(v, out);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// How much streamed tool input (all of a stream's tool calls together) is held to
/// digest at the end; an input that does not fit gets no digest (its call is still
/// recorded).
const TOOL_INPUT_LIMIT: usize = 1 << 20;

/// A `tool_use` block of a stream: its id and name, and its input's JSON text so far.
#[derive(Default)]
struct StreamedToolUse {
    id: Option<String>,
    name: String,
    /// The `input` of the block's start (`{}` when the input follows in pieces).
    start_input: Option<Value>,
    json: String,
    too_long: bool,
}

impl StreamedToolUse {
    fn into_call(self) -> ToolCall {
        let input = if self.too_long {
            None
        } else if self.json.is_empty() {
            self.start_input
        } else {
            serde_json::from_str::<Value>(&self.json).ok()
        };
        ToolCall { id: self.id, name: self.name, arguments_digest: input.as_ref().map(input_digest) }
    }
}

/// Why the message stopped: its finish reason, and a refusal as the provider's
/// safeguard decision.
fn stopped(reason: String, rec: &mut AuditRecord) {
    let mut safeguards = super::safeguards::ProviderSafeguards::default();
    safeguards.reason(&reason);
    safeguards.fill(rec);
    fill_vec(&mut rec.gen_ai.response.finish_reasons, vec![reason]);
}

fn message(m: &Value, rec: &mut AuditRecord) {
    fill(&mut rec.gen_ai.response.id, str_of(m, "id"));
    fill(&mut rec.gen_ai.response.model, str_of(m, "model"));
    if let Some(r) = str_of(m, "stop_reason") {
        stopped(r, rec);
    }
    if let Some(u) = m.get("usage") {
        fill(&mut rec.gen_ai.usage.input_tokens, u64_of(u, "input_tokens"));
        fill(&mut rec.gen_ai.usage.output_tokens, u64_of(u, "output_tokens"));
        fill(&mut rec.gen_ai.usage.cached_input_tokens, u64_of(u, "cache_read_input_tokens"));
    }
}

#[derive(Default)]
struct AnthropicStream {
    start: Option<Value>,
    text: TextDigest,
    stop_reason: Option<String>,
    output_tokens: Option<u64>,
    /// Tool calls by content block index.
    tools: std::collections::BTreeMap<u64, StreamedToolUse>,
    /// Bytes of tool input held, all calls together.
    tool_input_held: usize,
    /// An `error` event (the API ends the stream after it).
    error: Option<Value>,
    done: bool,
}

impl StreamExtractor for AnthropicStream {
    fn event(&mut self, ev: &SseEvent) {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => self.start = v.get("message").cloned(),
            Some("content_block_start") => {
                let block = v.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("tool_use") {
                    let block = block.unwrap_or(&Value::Null);
                    self.tools.insert(
                        u64_of(&v, "index").unwrap_or(0),
                        StreamedToolUse {
                            id: str_of(block, "id"),
                            name: str_of(block, "name").unwrap_or_default(),
                            start_input: block.get("input").cloned(),
                            ..Default::default()
                        },
                    );
                }
            }
            Some("content_block_delta") => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    self.text.push(t);
                }
                if let Some(piece) = v.pointer("/delta/partial_json").and_then(Value::as_str)
                    && let Some(tool) = self.tools.get_mut(&u64_of(&v, "index").unwrap_or(0))
                {
                    if tool.too_long {
                        // Its digest is lost already; hold nothing more of it.
                    } else if self.tool_input_held + piece.len() > TOOL_INPUT_LIMIT {
                        tool.too_long = true;
                        self.tool_input_held -= tool.json.len();
                        tool.json = String::new();
                    } else {
                        self.tool_input_held += piece.len();
                        tool.json.push_str(piece);
                    }
                }
            }
            Some("message_delta") => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_owned());
                }
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.output_tokens = Some(n);
                }
            }
            Some("message_stop") => self.done = true,
            Some("error") => {
                self.error = Some(v.get("error").cloned().unwrap_or(Value::Null));
                self.done = true;
            }
            _ => {}
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>, rec: &mut AuditRecord) {
        let s = *self;
        fill(&mut rec.gen_ai.usage.output_tokens, s.output_tokens);
        if let Some(r) = s.stop_reason {
            stopped(r, rec);
        }
        if let Some(m) = &s.start {
            message(m, rec);
        }
        fill_vec(&mut rec.provenance.tool_calls, s.tools.into_values().map(StreamedToolUse::into_call).collect());
        fill(&mut rec.provenance.output_digest, s.text.hex());
        if let Some(e) = &s.error {
            super::stream_error(rec, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use kiroku_schemas::Timestamp;

    #[test]
    fn a_tool_inputs_digest_does_not_depend_on_key_order() {
        // Keys out of order, nested, with escapes and non-ASCII text: the digest is of
        // the sorted compact form, whatever order the map keeps.
        let input: Value =
            serde_json::from_str(r#"{"z": {"b": [1, {"y": true, "x": null}], "a": 1.5}, "q": "\"引用\"\n", "a": []}"#)
                .unwrap();
        let sorted = r#"{"a":[],"q":"\"引用\"\n","z":{"a":1.5,"b":[1,{"x":null,"y":true}]}}"#;
        assert_eq!(input_digest(&input), text_digest(sorted));
    }

    #[test]
    fn streamed_and_non_streamed_agree() {
        let full = serde_json::json!({"id": "msg_1", "type": "message", "model": "claude-x", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "Hi there"}], "usage": {"input_tokens": 9, "output_tokens": 2}});
        let mut a = AuditRecord::new("a", Timestamp::from_unix_nanos(0));
        AnthropicExtractor.response("/v1/messages", &full, &mut a);
        let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut s = AnthropicExtractor.stream("/v1/messages");
        let mut p = SseParser::default();
        p.feed(sse.as_bytes(), &mut |e| s.event(&e));
        assert!(s.is_done());
        let mut b = AuditRecord::new("b", Timestamp::from_unix_nanos(0));
        s.finish(&mut b);
        assert_eq!(a.gen_ai, b.gen_ai);
        assert_eq!(a.provenance.output_digest, b.provenance.output_digest);
    }

    #[test]
    fn streamed_tool_use_agrees_with_the_whole_message() {
        let full = serde_json::json!({"id": "msg_2", "type": "message", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "kiroku", "n": 3}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}]});
        let mut a = AuditRecord::new("a", Timestamp::from_unix_nanos(0));
        AnthropicExtractor.response("/v1/messages", &full, &mut a);
        assert_eq!(a.provenance.tool_calls.len(), 2);

        let event = |v: serde_json::Value| SseEvent { event: None, data: v.to_string() };
        let mut s = AnthropicExtractor.stream("/v1/messages");
        for v in [
            serde_json::json!({"type": "message_start", "message": {"id": "msg_2", "model": "claude-x"}}),
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking."}}),
            serde_json::json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
            // The model's own spacing and key order: the digest is of the parsed input.
            serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"n\": 3, "}}),
            serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"q\": \"kiroku\"}"}}),
            serde_json::json!({"type": "content_block_start", "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}}),
            serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
            serde_json::json!({"type": "message_stop"}),
        ] {
            s.event(&event(v));
        }
        let mut b = AuditRecord::new("b", Timestamp::from_unix_nanos(0));
        s.finish(&mut b);
        assert_eq!(b.provenance.tool_calls, a.provenance.tool_calls);
        assert_eq!(b.provenance.output_digest, a.provenance.output_digest);
        assert_eq!(b.gen_ai.response.finish_reasons, ["tool_use"]);
    }
    #[test]
    fn streamed_tool_input_is_held_up_to_a_limit_for_all_calls_together() {
        let event = |v: serde_json::Value| SseEvent { event: None, data: v.to_string() };
        let mut s = AnthropicExtractor.stream("/v1/messages");
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(600 << 10));
        for i in 0..2u64 {
            s.event(&event(serde_json::json!({"type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": "big", "input": {}}})));
            for piece in big.as_bytes().chunks(64 << 10) {
                let piece = std::str::from_utf8(piece).unwrap();
                s.event(&event(serde_json::json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
        }
        let mut r = AuditRecord::new("r", Timestamp::from_unix_nanos(0));
        s.finish(&mut r);
        let calls = &r.provenance.tool_calls;
        assert_eq!(calls.len(), 2, "both calls are recorded");
        let v: serde_json::Value = serde_json::from_str(&big).unwrap();
        assert_eq!(calls[0].arguments_digest, Some(input_digest(&v)), "the first fits");
        assert_eq!(calls[1].arguments_digest, None, "the second would pass 1 MiB held in all");
        assert_eq!(calls[1].name, "big");
    }

    #[test]
    fn a_refusal_is_the_providers_safeguard_decision_streamed_or_not() {
        let full = serde_json::json!({"id": "msg_4", "type": "message", "model": "claude-x", "stop_reason": "refusal",
            "content": [{"type": "text", "text": "I"}]});
        let mut a = AuditRecord::new("a", Timestamp::from_unix_nanos(0));
        AnthropicExtractor.response("/v1/messages", &full, &mut a);
        assert_eq!(a.safeguards.len(), 1);
        assert_eq!(
            (a.safeguards[0].policy_id.as_str(), a.safeguards[0].action, a.safeguards[0].stage.as_deref()),
            ("provider.refusal", kiroku_schemas::record::SafeguardAction::Blocked, Some("output"))
        );
        let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_4\",\"model\":\"claude-x\",\"stop_reason\":null}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut s = AnthropicExtractor.stream("/v1/messages");
        SseParser::default().feed(sse.as_bytes(), &mut |e| s.event(&e));
        let mut b = AuditRecord::new("b", Timestamp::from_unix_nanos(0));
        s.finish(&mut b);
        assert_eq!(b.safeguards, a.safeguards);
    }

    #[test]
    fn an_error_event_ends_the_stream_and_makes_the_record_an_error() {
        let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_3\",\"model\":\"claude-x\"}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let mut s = AnthropicExtractor.stream("/v1/messages");
        SseParser::default().feed(sse.as_bytes(), &mut |e| s.event(&e));
        assert!(s.is_done(), "the API sends nothing after it");
        let mut r = AuditRecord::new("r", Timestamp::from_unix_nanos(0));
        s.finish(&mut r);
        assert_eq!(r.http.outcome, kiroku_schemas::record::Outcome::Error);
        assert_eq!(r.http.error.as_deref(), Some("the stream carried an error: overloaded_error: Overloaded"));
        assert_eq!(r.gen_ai.response.model.as_deref(), Some("claude-x"));
    }
}
