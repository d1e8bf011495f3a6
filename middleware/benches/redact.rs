//! Redaction of captured bodies, per body: `cargo bench -p kiroku --bench redact`.
//!
//! Three 2 KiB bodies: a chat request of plain prose, a chat completion response, and a
//! request carrying an e-mail address, a phone number and a card number (so matches are
//! replaced). The baseline, same run, is the JSON round trip alone (parse into a
//! `serde_json::Value` and print it again), which redacting through a parsed tree costs
//! on top of the matching.

use divan::{Bencher, counter::BytesCount};

fn main() {
    divan::main();
}

fn prose(n: usize) -> String {
    "lorem ipsum dolor sit amet ".repeat(n / 27 + 1)[..n].to_owned()
}

fn body(which: &str) -> Vec<u8> {
    let v = match which {
        "request" => serde_json::json!({"model": "sample-1", "messages": [
            {"role": "system", "content": "You answer questions about the documents."},
            {"role": "user", "content": prose(1900)}]}),
        "response" => serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_764_000_000,
            "model": "sample-1", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": prose(1750)}}],
            "usage": {"prompt_tokens": 412, "completion_tokens": 380, "total_tokens": 792}}),
        _ => serde_json::json!({"model": "sample-1", "messages": [{"role": "user", "content": format!(
            "{} write to taro.yamada@example.co.jp or call 090-1234-5678, card 4111 1111 1111 1111. {}",
            prose(900), prose(900))}]}),
    };
    serde_json::to_vec(&v).expect("json")
}

const BODIES: [&str; 3] = ["request", "response", "pii"];

#[divan::bench(args = BODIES)]
fn redact_body(b: Bencher<'_, '_>, which: &str) {
    let r = kiroku::redact::Redactor::builtin();
    let body = body(which);
    b.counter(BytesCount::new(body.len())).bench(|| r.redact_body(divan::black_box(&body)));
}

#[divan::bench(args = BODIES)]
fn baseline_json_round_trip(b: Bencher<'_, '_>, which: &str) {
    let body = body(which);
    b.counter(BytesCount::new(body.len()))
        .bench(|| serde_json::from_slice::<serde_json::Value>(divan::black_box(&body)).map(|v| v.to_string()));
}
