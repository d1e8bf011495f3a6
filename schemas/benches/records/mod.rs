//! The records the `kiroku-schemas` benches read and write.

use kiroku_schemas::record::{OutputSource, Watermark};
use kiroku_schemas::{AuditRecord, Timestamp};

/// A chat completion with usage, one output source, one watermark and two attributes
/// (1,136 bytes of JSON), shaped like the collector's compaction bench.
pub fn record() -> AuditRecord {
    let mut r = AuditRecord::new("01a2c0de-0000-7000-8000-000000000042", Timestamp::now());
    r.chain_id = "01a23027-b94e-7521-8aa5-a65adf466f00".parse().expect("chain id");
    r.seq = 42;
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.http.status = Some(200);
    r.http.response.bytes = 2048;
    r.http.response.blake3 = Some("71".repeat(32));
    r.gen_ai.request.model = Some("sample-1".into());
    r.gen_ai.response.model = r.gen_ai.request.model.clone();
    r.gen_ai.usage.input_tokens = Some(100);
    r.gen_ai.usage.output_tokens = Some(200);
    r.gen_ai.response.finish_reasons = vec!["stop".into()];
    r.trace.trace_id = Some(format!("{:032x}", 42 * 7919));
    r.provenance.output_digest = Some("9c".repeat(32));
    r.output_sources.push(OutputSource {
        uri: "https://docs.example.jp/doc/42".into(),
        rights_holder: Some("Example KK".into()),
        score: Some(0.8),
        ..Default::default()
    });
    r.watermarks.push(Watermark {
        scheme: "metadata-header".into(),
        key_id: Some("wm-2026".into()),
        ..Default::default()
    });
    r.attributes.insert("tenant".into(), "tenant-2".into());
    r.attributes.insert("pad".into(), "x".repeat(120));
    r
}

/// `record()` with a 2 KiB chat request and a 2 KiB chat completion captured, as the
/// layer stores them (JSON inside a JSON string: every quote escaped).
#[allow(dead_code)]
pub fn layer_record() -> AuditRecord {
    let mut r = record();
    let prose = "The archive keeps every inference with its sources and watermark. ";
    let request = format!(
        r#"{{"model":"sample-1","messages":[{{"role":"user","content":"{}"}}],"temperature":0.2}}"#,
        prose.repeat(30)
    );
    let response = format!(
        r#"{{"id":"chatcmpl-42","object":"chat.completion","model":"sample-1","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":100,"completion_tokens":200}}}}"#,
        prose.repeat(29)
    );
    r.http.request.captured = Some(request);
    r.http.response.captured = Some(response);
    r
}

/// `layer_record()` whose captured response is 2 KiB of short strings (token logprobs):
/// a quote every few bytes, where scanning eight bytes at a time gains least.
#[allow(dead_code)]
pub fn dense_record() -> AuditRecord {
    let mut r = layer_record();
    let mut response = String::from(r#"{"id":"chatcmpl-42","choices":[{"index":0,"logprobs":{"content":["#);
    while response.len() < 2000 {
        response.push_str(r#"{"token":" the","logprob":-0.25},"#);
    }
    response.push_str(r#"{"token":".","logprob":-0.01}]}}]}"#);
    r.http.response.captured = Some(response);
    r
}

/// The record a bench argument names.
#[allow(dead_code)] // the reading bench uses `record()` only
pub fn bench_record(which: &str) -> AuditRecord {
    match which {
        "layer record" => layer_record(),
        "layer, short strings" => dense_record(),
        _ => record(),
    }
}
