//! OpenAI-compatible APIs: chat completions, completions, embeddings, responses.

use std::collections::BTreeMap;

use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::ToolCall;
use serde_json::Value;

use super::safeguards::ProviderSafeguards;
use super::{Extractor, StreamExtractor, TextDigest, common_request, fill, fill_vec, str_of, text_digest, u64_of};
use crate::sse::SseEvent;

/// Extracts provenance from OpenAI-compatible requests and responses
/// (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`,
/// `/v1/moderations`), streamed or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiExtractor;

fn operation(route: &str) -> &'static str {
    if route.ends_with("/chat/completions") {
        "chat"
    } else if route.ends_with("/completions") {
        "text_completion"
    } else if route.ends_with("/embeddings") {
        "embeddings"
    } else if route.ends_with("/moderations") {
        "moderation"
    } else {
        "chat"
    }
}

impl Extractor for OpenAiExtractor {
    fn handles(&self, route: &str) -> bool {
        ["/chat/completions", "/completions", "/embeddings", "/responses", "/moderations"]
            .iter()
            .any(|s| route.ends_with(s))
    }

    fn request(&self, route: &str, body: &Value, rec: &mut AuditRecord) {
        fill(&mut rec.gen_ai.operation.name, Some(operation(route).to_owned()));
        fill(&mut rec.gen_ai.provider.name, Some("openai".to_owned()));
        common_request(body, rec);
        let system = body.get("messages").and_then(Value::as_array).and_then(|ms| {
            ms.iter()
                .find(|m| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer")))
                .and_then(|m| m.get("content"))
                .map(content_text)
        });
        let system = system.or_else(|| str_of(body, "instructions"));
        fill(&mut rec.provenance.system_prompt_digest, system.map(|s| text_digest(&s)));
    }

    fn response(&self, _route: &str, body: &Value, rec: &mut AuditRecord) {
        let r = &mut rec.gen_ai.response;
        fill(&mut r.id, str_of(body, "id"));
        fill(&mut r.model, str_of(body, "model"));
        usage(body.get("usage"), rec);
        let mut safeguards = ProviderSafeguards::default();
        safeguards.azure(body);
        if let Some(results) = body.get("results").and_then(Value::as_array) {
            safeguards.moderation(results, str_of(body, "model"));
        }
        if body.get("object").and_then(Value::as_str) == Some("response") || body.get("output").is_some() {
            if let Some(r) = body.pointer("/incomplete_details/reason").and_then(Value::as_str) {
                safeguards.reason(r);
            }
            safeguards.fill(rec);
            responses_api(body, rec);
            return;
        }
        let choices = body.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut reasons = Vec::new();
        let mut tool_calls = Vec::new();
        for c in &choices {
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                safeguards.reason(f);
                reasons.push(f.to_owned());
            }
            if let Some(tcs) = c.pointer("/message/tool_calls").and_then(Value::as_array) {
                for tc in tcs {
                    tool_calls.push(ToolCall {
                        id: str_of(tc, "id"),
                        name: tc.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        arguments_digest: tc.pointer("/function/arguments").and_then(Value::as_str).map(text_digest),
                    });
                }
            }
            for a in c.pointer("/message/annotations").and_then(Value::as_array).into_iter().flatten() {
                citation(a, rec);
            }
        }
        fill_vec(&mut rec.gen_ai.response.finish_reasons, reasons);
        fill_vec(&mut rec.provenance.tool_calls, tool_calls);
        safeguards.fill(rec);
        let text =
            choices.first().and_then(|c| c.pointer("/message/content").or_else(|| c.get("text"))).map(content_text);
        fill(&mut rec.provenance.output_digest, text.map(|t| text_digest(&t)));
    }

    fn stream(&self, _route: &str) -> Box<dyn StreamExtractor> {
        Box::new(OpenAiStream::default())
    }
}

/// Text of a `content` that is a string or an array of parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

fn usage(u: Option<&Value>, rec: &mut AuditRecord) {
    let Some(u) = u else { return };
    let g = &mut rec.gen_ai.usage;
    fill(&mut g.input_tokens, u64_of(u, "prompt_tokens").or_else(|| u64_of(u, "input_tokens")));
    fill(&mut g.output_tokens, u64_of(u, "completion_tokens").or_else(|| u64_of(u, "output_tokens")));
    fill(
        &mut g.cached_input_tokens,
        u.pointer("/prompt_tokens_details/cached_tokens")
            .or_else(|| u.pointer("/input_tokens_details/cached_tokens"))
            .and_then(Value::as_u64),
    );
}

fn citation(a: &Value, rec: &mut AuditRecord) {
    if a.get("type").and_then(Value::as_str) != Some("url_citation") {
        return;
    }
    let c = a.get("url_citation").unwrap_or(a);
    if let Some(uri) = str_of(c, "url")
        && !rec.output_sources.iter().any(|s| s.uri == uri)
    {
        rec.output_sources.push(kiroku_schemas::record::OutputSource {
            uri,
            title: str_of(c, "title"),
            ..Default::default()
        });
    }
}

/// The Responses API (`/v1/responses`): output items of type `message` and `function_call`.
fn responses_api(body: &Value, rec: &mut AuditRecord) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in body.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                    for a in part.get("annotations").and_then(Value::as_array).into_iter().flatten() {
                        citation(a, rec);
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall {
                id: str_of(item, "call_id"),
                name: str_of(item, "name").unwrap_or_default(),
                arguments_digest: item.get("arguments").and_then(Value::as_str).map(text_digest),
            }),
            _ => {}
        }
    }
    fill_vec(&mut rec.provenance.tool_calls, calls);
    if let Some(s) = str_of(body, "status") {
        fill_vec(&mut rec.gen_ai.response.finish_reasons, vec![s]);
    }
    if !text.is_empty() {
        fill(&mut rec.provenance.output_digest, Some(text_digest(&text)));
    }
}

/// What one stream may make the extractor hold, whatever the upstream sends: choices
/// and tool calls followed, citations kept, bytes of one tool call's name. A real
/// completion stays far below; past these, the rest is passed on but not extracted.
const STREAM_ENTRIES: usize = 1024;
const TOOL_NAME_BYTES: usize = 1024;

/// A streamed chat completion or response, read event by event; bounded by
/// [`STREAM_ENTRIES`] and [`TOOL_NAME_BYTES`].
#[derive(Default)]
struct OpenAiStream {
    id: Option<String>,
    model: Option<String>,
    text: TextDigest,
    reasons: BTreeMap<u64, String>,
    /// Per tool call index: its id, its name, and a running digest of its arguments
    /// (never held whole: they can be as long as the stream).
    tool_names: BTreeMap<u64, (Option<String>, String, TextDigest)>,
    usage: Option<Value>,
    completed: Option<Value>,
    citations: Vec<Value>,
    /// An error object the stream carried (a chat completion chunk's `error`, a
    /// Responses API `error` event or failed response).
    error: Option<Value>,
    /// The provider's content filter results, as the chunks carry them.
    safeguards: ProviderSafeguards,
    done: bool,
}

impl StreamExtractor for OpenAiStream {
    fn event(&mut self, ev: &SseEvent) {
        if ev.data == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        // Responses API streaming events.
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            match t {
                "response.output_text.delta" => {
                    if let Some(d) = v.get("delta").and_then(Value::as_str) {
                        self.text.push(d);
                    }
                    return;
                }
                "response.completed" | "response.failed" | "response.incomplete" => {
                    self.completed = v.get("response").cloned();
                    if t == "response.failed" {
                        let e = v.pointer("/response/error").filter(|e| !e.is_null());
                        self.error = Some(e.cloned().unwrap_or_else(|| serde_json::json!({"type": "response.failed"})));
                    }
                    self.done = true;
                    return;
                }
                "error" => {
                    self.error = Some(v.clone());
                    return;
                }
                _ if t.starts_with("response.") => return,
                _ => {}
            }
        }
        self.safeguards.azure(&v);
        if let Some(e) = v.get("error").filter(|e| e.is_object()) {
            self.error = Some(e.clone());
            return;
        }
        if self.id.is_none() {
            self.id = str_of(&v, "id");
        }
        if self.model.is_none() {
            self.model = str_of(&v, "model");
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        for c in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let idx = u64_of(c, "index").unwrap_or(0);
            if idx == 0
                && let Some(t) = c
                    .pointer("/delta/content")
                    .and_then(Value::as_str)
                    .or_else(|| c.get("text").and_then(Value::as_str))
            {
                self.text.push(t);
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str)
                && (self.reasons.len() < STREAM_ENTRIES || self.reasons.contains_key(&idx))
            {
                self.reasons.insert(idx, f.to_owned());
            }
            for tc in c.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let ti = u64_of(tc, "index").unwrap_or(0);
                if self.tool_names.len() >= STREAM_ENTRIES && !self.tool_names.contains_key(&ti) {
                    continue;
                }
                let e = self.tool_names.entry(ti).or_default();
                if e.0.is_none() {
                    e.0 = str_of(tc, "id");
                }
                if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str)
                    && e.1.len() + n.len() <= TOOL_NAME_BYTES
                {
                    e.1.push_str(n);
                }
                if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                    e.2.push(a);
                }
            }
            for a in c.pointer("/delta/annotations").and_then(Value::as_array).into_iter().flatten() {
                if self.citations.len() < STREAM_ENTRIES {
                    self.citations.push(a.clone());
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>, rec: &mut AuditRecord) {
        let s = *self;
        if let Some(done) = &s.completed {
            OpenAiExtractor.response("/v1/responses", done, rec);
        }
        fill(&mut rec.gen_ai.response.id, s.id);
        fill(&mut rec.gen_ai.response.model, s.model);
        usage(s.usage.as_ref(), rec);
        let mut safeguards = s.safeguards;
        for r in s.reasons.values() {
            safeguards.reason(r);
        }
        safeguards.fill(rec);
        fill_vec(&mut rec.gen_ai.response.finish_reasons, s.reasons.into_values().collect());
        let calls = s
            .tool_names
            .into_values()
            .map(|(id, name, args)| ToolCall { id, name, arguments_digest: args.hex() })
            .collect();
        fill_vec(&mut rec.provenance.tool_calls, calls);
        for a in &s.citations {
            citation(a, rec);
        }
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

    fn rec() -> AuditRecord {
        AuditRecord::new("r", Timestamp::from_unix_nanos(0))
    }

    #[test]
    fn streamed_and_non_streamed_agree() {
        let full = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "sample-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, 世界!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        });
        let mut a = rec();
        OpenAiExtractor.response("/v1/chat/completions", &full, &mut a);

        let sse = "data: {\"id\":\"chatcmpl-1\",\"model\":\"sample-1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello, \"}}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"model\":\"sample-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"世界!\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"model\":\"sample-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n\
data: [DONE]\n\n";
        let mut s = OpenAiExtractor.stream("/v1/chat/completions");
        let mut p = SseParser::default();
        // One byte at a time, splitting the UTF-8 characters.
        for b in sse.as_bytes() {
            p.feed(std::slice::from_ref(b), &mut |e| s.event(&e));
        }
        assert!(s.is_done());
        let mut b = rec();
        s.finish(&mut b);
        assert_eq!(a.gen_ai, b.gen_ai);
        assert_eq!(a.provenance.output_digest, b.provenance.output_digest);
        assert_eq!(a.provenance.output_digest.as_deref(), Some(text_digest("Hello, 世界!").as_str()));
    }

    #[test]
    fn request_parameters_and_tools() {
        let req = serde_json::json!({"model": "gpt-4o", "temperature": 0.3, "top_p": 0.9, "max_tokens": 100, "seed": 7, "stream": true,
            "stop": ["\n\n"], "tools": [{"type": "function", "function": {"name": "lookup"}}],
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
        let mut r = rec();
        OpenAiExtractor.request("/v1/chat/completions", &req, &mut r);
        let q = &r.gen_ai.request;
        assert_eq!(
            (q.model.as_deref(), q.temperature, q.top_p, q.max_tokens, q.seed, q.stream),
            (Some("gpt-4o"), Some(0.3), Some(0.9), Some(100), Some(7), Some(true))
        );
        assert_eq!(q.tools, vec!["lookup"]);
        assert_eq!(r.provenance.system_prompt_digest.as_deref(), Some(text_digest("be brief").as_str()));
        assert_eq!(r.gen_ai.operation.name.as_deref(), Some("chat"));
        // Everything fitted its typed field: nothing is kept twice.
        assert!(r.provenance.parameters.is_empty(), "{:?}", r.provenance.parameters);
    }

    #[test]
    fn parameters_that_do_not_fit_their_fields_are_kept_as_sent() {
        let req = serde_json::json!({"model": "gpt-4o", "seed": 18446744073709551615u64, "max_tokens": 100.0,
            "temperature": "0.7", "stream": "yes", "stop": ["a", 1], "n": -1, "top_p": null,
            "messages": [{"role": "user", "content": "hi"}]});
        let mut r = rec();
        OpenAiExtractor.request("/v1/chat/completions", &req, &mut r);
        let q = &r.gen_ai.request;
        assert_eq!((q.seed, q.max_tokens, q.temperature, q.stream, q.choice_count), (None, None, None, None, None));
        assert_eq!(q.stop_sequences, vec!["a"]);
        let kept: Vec<(&str, &serde_json::Value)> =
            r.provenance.parameters.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(
            kept,
            [
                ("max_tokens", &req["max_tokens"]),
                ("n", &req["n"]),
                ("seed", &req["seed"]),
                ("stop", &req["stop"]),
                ("stream", &req["stream"]),
                ("temperature", &req["temperature"]),
            ]
        );
        // The seed survives the journal's JSON exactly.
        let back = AuditRecord::from_json(&r.to_json()).unwrap();
        assert_eq!(back.provenance.parameters["seed"].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn annotations_win_over_extraction() {
        let mut r = rec();
        r.gen_ai.response.model = Some("from-app".into());
        OpenAiExtractor.response("/v1/chat/completions", &serde_json::json!({"model": "from-body"}), &mut r);
        assert_eq!(r.gen_ai.response.model.as_deref(), Some("from-app"));
    }

    #[test]
    fn url_citations_become_sources_and_tool_calls_are_kept() {
        let body = serde_json::json!({"choices": [{"message": {"content": "x",
            "annotations": [{"type": "url_citation", "url_citation": {"url": "https://example.org/a", "title": "A"}}],
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
            "finish_reason": "tool_calls"}]});
        let mut r = rec();
        OpenAiExtractor.response("/v1/chat/completions", &body, &mut r);
        assert_eq!(r.output_sources[0].uri, "https://example.org/a");
        assert_eq!(r.provenance.tool_calls[0].name, "lookup");
        assert_eq!(r.gen_ai.response.finish_reasons, vec!["tool_calls"]);
    }

    #[test]
    fn streamed_tool_calls_agree_with_the_whole_response() {
        // Arguments longer than a digest's kept head, in pieces after an empty first one
        // (as OpenAI streams them); arguments that are empty; none at all.
        let args = format!("{{\"q\":\"{}\"}}", "ab".repeat(700));
        let whole = serde_json::json!({"choices": [{"index": 0, "message": {"content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": args}},
            {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}},
            {"id": "call_3", "type": "function", "function": {"name": "bare"}}]},
            "finish_reason": "tool_calls"}]});
        let mut a = rec();
        OpenAiExtractor.response("/v1/chat/completions", &whole, &mut a);

        let mut s = OpenAiExtractor.stream("/v1/chat/completions");
        let delta = |calls: serde_json::Value| SseEvent {
            event: None,
            data: serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]}).to_string(),
        };
        s.event(&delta(
            serde_json::json!([{"index": 0, "id": "call_1", "function": {"name": "lookup", "arguments": ""}}]),
        ));
        for piece in args.as_bytes().chunks(300) {
            let piece = std::str::from_utf8(piece).unwrap();
            s.event(&delta(serde_json::json!([{"index": 0, "function": {"arguments": piece}}])));
        }
        s.event(&delta(
            serde_json::json!([{"index": 1, "id": "call_2", "function": {"name": "noop", "arguments": ""}}]),
        ));
        s.event(&delta(serde_json::json!([{"index": 2, "id": "call_3", "function": {"name": "bare"}}])));
        let mut b = rec();
        s.finish(&mut b);
        assert_eq!(b.provenance.tool_calls, a.provenance.tool_calls);
        assert_eq!(b.provenance.tool_calls[0].arguments_digest.as_deref(), Some(text_digest(&args).as_str()));
        assert_eq!(b.provenance.tool_calls[1].arguments_digest.as_deref(), Some(text_digest("").as_str()));
        assert_eq!(b.provenance.tool_calls[2].arguments_digest, None, "no arguments, no digest");
    }

    #[test]
    fn a_stream_cannot_make_the_extractor_hold_without_bound() {
        let mut s = OpenAiExtractor.stream("/v1/chat/completions");
        let event = |v: serde_json::Value| SseEvent { event: None, data: v.to_string() };
        for i in 0..(STREAM_ENTRIES as u64 + 50) {
            s.event(&event(serde_json::json!({"choices": [{"index": i, "finish_reason": "stop",
                "delta": {"tool_calls": [{"index": i, "id": format!("call_{i}"), "function": {"name": "n".repeat(600)}}],
                    "annotations": [{"type": "url_citation", "url_citation": {"url": format!("https://example.org/{i}")}}]}}]})));
        }
        // The first call's name grows no further than its bound.
        s.event(&event(serde_json::json!({"choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"name": "n".repeat(600)}}]}}]})));
        let mut r = rec();
        s.finish(&mut r);
        assert_eq!(r.provenance.tool_calls.len(), STREAM_ENTRIES);
        assert_eq!(r.provenance.tool_calls[0].name.len(), 600, "a second 600 bytes would pass the name bound");
        assert_eq!(r.gen_ai.response.finish_reasons.len(), STREAM_ENTRIES);
        assert_eq!(r.output_sources.len(), STREAM_ENTRIES);
    }

    #[test]
    fn responses_api_and_embeddings() {
        let body = serde_json::json!({"id": "resp_1", "object": "response", "model": "m", "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 1}});
        let mut r = rec();
        OpenAiExtractor.response("/v1/responses", &body, &mut r);
        assert_eq!(r.provenance.output_digest.as_deref(), Some(text_digest("hi").as_str()));
        assert_eq!(r.gen_ai.usage.input_tokens, Some(3));
        let mut e = rec();
        OpenAiExtractor.request("/v1/embeddings", &serde_json::json!({"model": "emb", "input": "x"}), &mut e);
        OpenAiExtractor.response(
            "/v1/embeddings",
            &serde_json::json!({"model": "emb", "data": [], "usage": {"prompt_tokens": 1}}),
            &mut e,
        );
        assert_eq!(e.gen_ai.operation.name.as_deref(), Some("embeddings"));
        assert_eq!(e.gen_ai.usage.input_tokens, Some(1));
    }

    #[test]
    fn the_providers_content_filter_is_a_safeguard_decision_streamed_or_not() {
        use kiroku_schemas::record::SafeguardAction;
        let filter = serde_json::json!({"hate": {"filtered": false, "severity": "safe"}, "violence": {"filtered": true, "severity": "medium"}});
        let prompt = serde_json::json!([{"prompt_index": 0, "content_filter_results": {"jailbreak": {"filtered": false, "detected": true}}}]);
        let full = serde_json::json!({"id": "c1", "object": "chat.completion", "model": "gpt-4o", "prompt_filter_results": prompt,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "I"}, "finish_reason": "content_filter",
                "content_filter_results": filter}]});
        let mut a = rec();
        OpenAiExtractor.response("/v1/chat/completions", &full, &mut a);
        let got: Vec<_> = a.safeguards.iter().map(|d| (d.action, d.stage.as_deref(), d.category.as_deref())).collect();
        assert_eq!(
            got,
            [
                (SafeguardAction::Flagged, Some("input"), Some("jailbreak")),
                (SafeguardAction::Filtered, Some("output"), Some("violence")),
                (SafeguardAction::Filtered, Some("output"), None),
            ]
        );
        assert!(a.safeguards.iter().all(|d| d.policy_id == "provider.content_filter"));
        // The same as a stream: the prompt's results first, the choice's with each delta.
        let chunks = [
            serde_json::json!({"id": "c1", "model": "", "choices": [], "prompt_filter_results": prompt}),
            serde_json::json!({"id": "c1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "I"}, "content_filter_results": filter}]}),
            serde_json::json!({"id": "c1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter", "content_filter_results": filter}]}),
        ];
        let mut st = OpenAiExtractor.stream("/v1/chat/completions");
        for c in &chunks {
            st.event(&SseEvent { event: None, data: c.to_string() });
        }
        let mut b = rec();
        st.finish(&mut b);
        assert_eq!(b.safeguards, a.safeguards);
        // What the application recorded wins.
        let mut c = rec();
        c.safeguards.push(kiroku_schemas::record::SafeguardDecision {
            policy_id: "app".into(),
            policy_version: None,
            action: SafeguardAction::Allowed,
            stage: None,
            category: None,
            score: None,
        });
        OpenAiExtractor.response("/v1/chat/completions", &full, &mut c);
        assert_eq!(c.safeguards.len(), 1);
    }

    #[test]
    fn responses_api_stream_errors_make_the_record_an_error() {
        use kiroku_schemas::record::Outcome;
        let events = [
            // The `error` event: its kind is in `code`.
            (
                r#"{"type":"error","code":"rate_limit_exceeded","message":"Slow down","sequence_number":3}"#,
                "rate_limit_exceeded: Slow down",
            ),
            // A failed response, with its error object.
            (
                r#"{"type":"response.failed","response":{"id":"resp_1","status":"failed","error":{"code":"server_error","message":"Boom"}}}"#,
                "server_error: Boom",
            ),
        ];
        for (data, want) in events {
            let mut s = OpenAiExtractor.stream("/v1/responses");
            s.event(&SseEvent { event: None, data: data.into() });
            let mut r = rec();
            s.finish(&mut r);
            assert_eq!(r.http.outcome, Outcome::Error, "{data}");
            assert_eq!(r.http.error.as_deref(), Some(format!("the stream carried an error: {want}").as_str()));
        }
        // A stream without one is not made an error.
        let mut s = OpenAiExtractor.stream("/v1/chat/completions");
        s.event(&SseEvent { event: None, data: "[DONE]".into() });
        let mut r = rec();
        s.finish(&mut r);
        assert_eq!((r.http.outcome, r.http.error), (Outcome::Completed, None));
    }
}
