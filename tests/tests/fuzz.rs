//! Fuzzing on stable: property tests that feed arbitrary input to every parser that
//! reads untrusted bytes (checkpoint notes, keys, tlog-proofs, the SSE parser, the JSON
//! extractors, the redactor; the segment reader and verifier are fuzzed in
//! kiroku-schemas), plus the checked-in corpus under `tests/fuzz-corpus/` as
//! regression inputs. No panic, no unbounded allocation from a length field.
//!
//! Bounded for CI (proptest's default 256 cases per target); `PROPTEST_CASES=20000`
//! for a long run.

use std::path::Path;

use kiroku::extract::{AnthropicExtractor, Extractor, OpenAiExtractor};
use kiroku::redact::Redactor;
use kiroku::sse::{SseEvent, SseParser};
use kiroku_schemas::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, TrustedKeys};
use kiroku_schemas::proof::TlogProof;
use kiroku_schemas::{AuditRecord, Timestamp};
use proptest::prelude::*;
use serde_json::Value;

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(kind);
    let mut out: Vec<Vec<u8>> =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(!out.is_empty(), "corpus {kind} is checked in");
    out.sort();
    out
}

fn verifier() -> NoteVerifier {
    NoteSigner::from_seed("kiroku-test-vectors", [0x5a; 32]).unwrap().verifier()
}

/// The corpus key and a second one, as after a key rotation.
fn rotated() -> TrustedKeys {
    let next = NoteSigner::from_seed("kiroku-test-vectors", [0x5b; 32]).unwrap().verifier();
    TrustedKeys::new([verifier(), next]).unwrap()
}

fn notes(data: &str) {
    let _ = Checkpoint::parse_body(data);
    let _ = Checkpoint::parse_note_unverified(data);
    let _ = verifier().open(data);
    let _ = rotated().open(data);
    let _ = NoteVerifier::from_key_text(data);
    let _ = TrustedKeys::from_key_text(data);
    let _ = NoteSigner::from_key_text(data);
}

fn proofs(data: &str) {
    if let Ok(p) = TlogProof::parse(data) {
        let _ = p.verify(&[0; 32], &rotated());
        assert_eq!(TlogProof::parse(&p.to_text()).as_ref(), Ok(&p), "format round trip");
    }
}

fn sse_events(data: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut p = SseParser::new(1 << 16);
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        let c = c.clamp(last, data.len());
        p.feed(&data[last..c], &mut |e| out.push(e));
        last = c;
    }
    out
}

fn extract(v: &Value) {
    for ex in [&OpenAiExtractor as &dyn Extractor, &AnthropicExtractor] {
        let mut r = AuditRecord::new("fuzz", Timestamp::from_unix_nanos(0));
        ex.request("/v1/chat/completions", v, &mut r);
        ex.response("/v1/chat/completions", v, &mut r);
        ex.response("/v1/responses", v, &mut r);
        let mut s = ex.stream("/v1/chat/completions");
        s.event(&SseEvent { event: None, data: v.to_string() });
        s.finish(&mut r);
        // Whatever was extracted still serialises into a record a reader accepts.
        AuditRecord::from_json(&r.to_json()).expect("record stays valid");
    }
}

/// Words the OpenAI and Anthropic formats use, as keys and as string values: random
/// JSON in their vocabulary reaches the extractors' deeper branches.
const VOCABULARY: [&str; 31] = [
    "model",
    "choices",
    "delta",
    "content",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "message",
    "type",
    "text",
    "index",
    "finish_reason",
    "annotations",
    "url_citation",
    "url",
    "title",
    "output",
    "response",
    "stop",
    "tools",
    "messages",
    "role",
    "system",
    "stop_reason",
    "input_tokens",
    "[DONE]",
    "response.completed",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::String),
        prop::sample::select(VOCABULARY.to_vec()).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(VOCABULARY.to_vec()), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

#[test]
fn the_corpus_parses_without_panics() {
    for c in corpus("note") {
        notes(&String::from_utf8_lossy(&c));
    }
    for c in corpus("proof") {
        proofs(&String::from_utf8_lossy(&c));
    }
    for c in corpus("sse") {
        let whole = sse_events(&c, &[]);
        for cut in 0..c.len() {
            assert_eq!(sse_events(&c, &[cut]), whole);
        }
        let mut s = OpenAiExtractor.stream("/v1/chat/completions");
        for e in &whole {
            s.event(e);
        }
    }
    for c in corpus("json") {
        extract(&serde_json::from_slice(&c).unwrap());
    }
    let valid =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus/note/valid.note")).unwrap();
    assert!(verifier().open(&valid).is_ok(), "the corpus's valid note still verifies");
    assert!(rotated().open(&valid).is_ok(), "and with a second trusted key beside its own");
}

proptest! {
    #[test]
    fn notes_and_keys_never_panic(s in "\\PC{0,300}") {
        notes(&s);
    }

    #[test]
    fn structured_notes_never_panic(origin in "[a-z/0-9-]{0,40}", size in "[0-9]{0,22}", root in "[A-Za-z0-9+/=]{0,50}", sig in "[A-Za-z0-9+/=]{0,120}") {
        notes(&format!("{origin}\n{size}\n{root}\n\n\u{2014} kiroku-test-vectors {sig}\n"));
    }

    #[test]
    fn proofs_never_panic(index in "[0-9]{0,22}", lines in prop::collection::vec("[A-Za-z0-9+/=]{0,48}", 0..70), tail in "\\PC{0,100}") {
        proofs(&format!("c2sp.org/tlog-proof@v1\nindex {index}\n{}\n\n{tail}", lines.join("\n")));
    }

    #[test]
    fn sse_is_the_same_however_it_is_cut(data in prop::collection::vec(prop::sample::select(b"data: {}[]\"x\r\n:event\xe3\x81\x82".to_vec()), 0..400), cuts in prop::collection::vec(0usize..400, 0..6)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(sse_events(&data, &cuts), sse_events(&data, &[]));
    }

    #[test]
    fn arbitrary_bytes_through_the_sse_parser(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = sse_events(&data, &[data.len() / 3]);
    }

    #[test]
    fn extractors_never_panic(v in json_value()) {
        extract(&v);
    }

    #[test]
    fn redaction_never_panics_and_removes_seeded_emails(s in "\\PC{0,200}", user in "[a-z]{1,10}") {
        let r = Redactor::builtin();
        let email = format!("{user}.secret@example.co.jp");
        let out = r.redact_text(&format!("{s} {email} {s}"));
        prop_assert!(!out.contains(&email));
        let _ = r.redact_body(s.as_bytes());
    }

    #[test]
    fn json_bodies_stay_json_and_lose_seeded_emails(v in json_value(), text in "\\PC{0,40}", user in "[a-z]{1,10}", pretty in any::<bool>()) {
        let r = Redactor::builtin().remove_json_path("data.*.user");
        let email = format!("{user}.secret@example.co.jp");
        let doc = serde_json::json!({"data": v, "contact": format!("{text} {email}"), email.clone(): 1, text.clone(): text});
        let body = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }.unwrap();
        let out = r.redact_body(body.as_bytes());
        prop_assert!(!out.contains(&email), "{}", out);
        prop_assert!(serde_json::from_str::<Value>(&out).is_ok(), "not JSON: {}", out);
    }
}
