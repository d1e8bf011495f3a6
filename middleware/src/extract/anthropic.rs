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
                    arguments_digest: block.get("input").map(|i| text_digest(&i.to_string())),
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

fn message(m: &Value, rec: &mut AuditRecord) {
    fill(&mut rec.gen_ai.response.id, str_of(m, "id"));
    fill(&mut rec.gen_ai.response.model, str_of(m, "model"));
    if let Some(r) = str_of(m, "stop_reason") {
        fill_vec(&mut rec.gen_ai.response.finish_reasons, vec![r]);
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
    done: bool,
}

impl StreamExtractor for AnthropicStream {
    fn event(&mut self, ev: &SseEvent) {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => self.start = v.get("message").cloned(),
            Some("content_block_delta") => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    self.text.push(t);
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
            fill_vec(&mut rec.gen_ai.response.finish_reasons, vec![r]);
        }
        if let Some(m) = &s.start {
            message(m, rec);
        }
        fill(&mut rec.provenance.output_digest, s.text.hex());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use kiroku_schemas::Timestamp;

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
}
