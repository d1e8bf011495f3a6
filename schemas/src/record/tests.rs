use super::*;

fn sample() -> AuditRecord {
    let t: Timestamp = "2026-11-21T10:00:00.000000001Z".parse().unwrap();
    let mut r = AuditRecord::new("0193f000-0000-7000-8000-000000000001", t);
    r.chain_id = "0193f000-0000-7000-8000-00000000c0de".parse().unwrap();
    r.seq = 7;
    r.first_byte_at = Some(Timestamp::from_unix_nanos(t.unix_nanos() + 1_000));
    r.finished_at = Timestamp::from_unix_nanos(t.unix_nanos() + 5_000);
    r.http = HttpExchange {
        method: "POST".into(),
        route: "/v1/chat/completions".into(),
        status: Some(200),
        outcome: Outcome::Completed,
        error: None,
        streaming: true,
        request: BodySummary {
            content_type: Some("application/json".into()),
            bytes: 10,
            blake3: Some("00".repeat(32)),
            capture: CaptureMode::Redacted,
            captured: Some("{}".into()),
            truncated: false,
        },
        response: BodySummary { bytes: 20, capture: CaptureMode::Digest, ..Default::default() },
    };
    r.gen_ai.request.model = Some("gpt-4o".into());
    r.gen_ai.request.temperature = Some(0.2);
    r.gen_ai.response.finish_reasons = vec!["stop".into()];
    r.gen_ai.usage.input_tokens = Some(12);
    r.output_sources.push(OutputSource {
        uri: "https://example.org/a".into(),
        rights_holder: Some("Example KK".into()),
        score: Some(0.9),
        ..Default::default()
    });
    r.watermarks.push(Watermark { scheme: "synthid-text".into(), detector_score: Some(0.97), ..Default::default() });
    r.digital_source_type = Some(IPTC_TRAINED_ALGORITHMIC_MEDIA.into());
    r.safeguards.push(SafeguardDecision {
        policy_id: "pii".into(),
        policy_version: Some("3".into()),
        action: SafeguardAction::Filtered,
        stage: Some("output".into()),
        category: None,
        score: None,
    });
    r.attributes.insert("team".into(), "search".into());
    r
}

#[test]
fn round_trips_through_json() {
    let r = sample();
    let bytes = r.to_json();
    let back = AuditRecord::from_json(&bytes).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.to_json(), bytes, "serialisation is deterministic");
}

#[test]
fn field_paths_follow_gen_ai_conventions() {
    let v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
    assert_eq!(v.pointer("/gen_ai/request/model").unwrap(), "gpt-4o");
    assert_eq!(v.pointer("/gen_ai/usage/input_tokens").unwrap(), 12);
    assert_eq!(v.pointer("/gen_ai/response/finish_reasons/0").unwrap(), "stop");
}

#[test]
fn keeps_fields_from_a_newer_minor_version() {
    let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
    v["schema_version"] = "1.7".into();
    v["energy"] = serde_json::json!({"joules": 12.5});
    let r = AuditRecord::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(r.extensions["energy"]["joules"], 12.5);
    let again: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
    assert_eq!(again, v);
}

#[test]
fn refuses_another_major_version() {
    let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
    v["schema_version"] = "2.0".into();
    let err = AuditRecord::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, RecordError::UnsupportedVersion { .. }), "{err}");
    assert!(AuditRecord::from_json(b"{\"seq\":1}").is_err());
}

/// The checked-in JSON Schema is what the types generate. Run with
/// `KIROKU_BLESS=1 cargo test -p kiroku-schemas` after changing a record type.
#[test]
fn checked_in_json_schema_is_in_step_with_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/json/audit-record.v1.schema.json");
    let generated = serde_json::to_string_pretty(&AuditRecord::json_schema()).unwrap() + "\n";
    if std::env::var_os("KIROKU_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{path} is out of date with the record types; regenerate with KIROKU_BLESS=1 cargo test -p kiroku-schemas"
    );
}

#[test]
fn sample_record_validates_against_schema_shape() {
    // Every top-level property of a full record is declared in the schema.
    let schema = AuditRecord::json_schema();
    let props = schema["properties"].as_object().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
    for key in v.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
}

/// Every field of the record set, with text that needs JSON escapes in places.
fn full() -> AuditRecord {
    let mut r = sample();
    r.http.error = Some("upstream said \"no\"\n".into());
    r.http.response.blake3 = Some("ab".repeat(32));
    r.http.response.captured = Some("{\"a\":\"é\\u0000\"}".into());
    r.http.response.truncated = true;
    r.http.response.content_type = Some("text/event-stream".into());
    r.caller = Caller { subject: Some("key:1f".into()), tenant: Some("t\u{1F600}".into()), client_addr: None };
    r.trace = TraceContext {
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        span_id: Some("b7ad6b7169203331".into()),
    };
    r.gen_ai.operation.name = Some("chat".into());
    r.gen_ai.provider.name = Some("openai".into());
    let q = &mut r.gen_ai.request;
    (q.top_p, q.top_k, q.max_tokens, q.seed) = (Some(0.5), Some(40.0), Some(256), Some(-7));
    (q.frequency_penalty, q.presence_penalty, q.choice_count, q.stream) = (Some(0.1), Some(-0.1), Some(2), Some(true));
    q.stop_sequences = vec!["\n\n".into(), "END".into()];
    q.tools = vec!["search".into()];
    r.gen_ai.response.id = Some("chatcmpl-1".into());
    r.gen_ai.response.model = Some("gpt-4o-2024-08-06".into());
    r.gen_ai.usage = GenAiUsage { input_tokens: Some(12), output_tokens: Some(34), cached_input_tokens: Some(5) };
    r.provenance = Provenance {
        model_version: Some("2024-08-06".into()),
        model_digest: Some("sha256:00".into()),
        deployment: Some("prod-eu".into()),
        system_prompt_digest: Some("cd".repeat(32)),
        output_digest: Some("ef".repeat(32)),
        tool_calls: vec![ToolCall { id: Some("call_1".into()), name: "search".into(), arguments_digest: None }],
        parameters: [("response_format".to_owned(), serde_json::json!({"type": "json_object"}))].into(),
    };
    r.output_sources[0].title = Some("Guide \\ 指針".into());
    r.output_sources[0].retrieved_at = Some(Timestamp::from_unix_nanos(1_700_000_000_123_456_789));
    r.watermarks[0].key_id = Some("k1".into());
    r.disclosure = Some(Disclosure { method: "label".into(), text: Some("AI-generated".into()) });
    r.records_lost_before = 3;
    r.attributes.insert("quote\"d".into(), "tab\there".into());
    r.extensions.insert("energy".into(), serde_json::json!({"joules": 1.5}));
    r.schema_version = "1.3".into();
    r
}

#[test]
fn a_view_reads_every_field_as_the_record_does() {
    for r in [sample(), full(), AuditRecord::new("x", Timestamp::from_unix_nanos(0))] {
        let bytes = r.to_json();
        let view = RecordView::parse(&bytes).unwrap();
        assert!(view.record_id.is_borrowed() && view.http.route.is_borrowed());
        assert_eq!(view.effective_model(), r.effective_model());
        assert_eq!(view.into_record(), r);
    }
    // Escaped text is decoded (and owned).
    let bytes = full().to_json();
    let view = RecordView::parse(&bytes).unwrap();
    assert!(!view.http.error.as_ref().unwrap().is_borrowed());
    assert_eq!(view.http.error.as_deref(), Some("upstream said \"no\"\n"));
}

/// Both readings of `bytes`: the same record, or both refuse.
fn readings_agree(bytes: &[u8]) -> Result<(), String> {
    let owned = AuditRecord::from_json(bytes).map_err(|e| e.to_string());
    let viewed = RecordView::parse(bytes).map(RecordView::into_record).map_err(|e| e.to_string());
    match (&owned, &viewed) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(a), Err(b)) if a == b => Ok(()),
        _ => Err(format!("{}: record {owned:?} vs view {viewed:?}", String::from_utf8_lossy(bytes))),
    }
}

#[test]
fn a_view_refuses_what_the_record_refuses() {
    let good = String::from_utf8(full().to_json()).unwrap();
    let cases = [
        good.replacen("{", "{\"seq\":1,", 1), // duplicate field
        good.replacen("\"schema_version\":\"1.3\"", "\"schema_version\":\"2.0\"", 1), // other major
        good.replacen("\"outcome\":\"completed\"", "\"outcome\":\"done\"", 1), // unknown enum value
        good.replacen("\"method\":\"POST\",", "", 1), // required field missing
        good.replacen("\"bytes\":10", "\"bytes\":-1", 1), // out of range
        good.replacen("\"status\":200", "\"status\":70000", 1),
        good.replacen("\"started_at\":\"2026", "\"started_at\":\"20x6", 1),
        good.replacen("\"tools\":[\"search\"]", "\"tools\":[1]", 1),
        good.replacen("\"action\":\"filtered\"", "\"action\":null", 1),
        good.replacen("\"uri\":", "\"uri\":null,\"x\":", 1),
        good.replacen("\"team\":\"search\"", "\"team\":7", 1),
        good.replacen("{\"joules\":1.5}", "{\"joules\":1.5", 1), // broken JSON in an extension
        format!("{good} "),                                      // trailing whitespace: fine
        format!("{good}x"),                                      // trailing garbage
        good.replacen("\"route\":\"/v1/chat/completions\"", "\"route\":\"/v1/chat/\\ud800\"", 1), // lone surrogate
    ];
    for c in &cases {
        readings_agree(c.as_bytes()).unwrap();
    }
    // The cases above do refuse (apart from trailing whitespace): the check is not vacuous.
    let refused = cases.iter().filter(|c| AuditRecord::from_json(c.as_bytes()).is_err()).count();
    assert_eq!(refused, cases.len() - 1);
}

/// Every JSON pointer of `v` (objects and arrays included).
fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2026-11-21T10:00:00Z")),
        Just(serde_json::Value::from("completed")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// Any record reached from a full one by replacing, removing or adding a value at
    /// random places reads the same through a view as through `AuditRecord`, or is
    /// refused by both with the same error.
    #[test]
    fn view_and_record_agree_on_mutated_records(
        edits in proptest::collection::vec((0usize..1000, 0u8..3, any_json(), "[a-z_]{1,10}"), 1..4)
    ) {
        let mut v: serde_json::Value = serde_json::from_slice(&full().to_json()).unwrap();
        for (at, action, value, key) in edits {
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            let p = all[at % all.len()].clone();
            let (parent, last) = p.rsplit_once('/').unwrap_or(("", ""));
            match action {
                0 => { if let Some(x) = v.pointer_mut(&p) { *x = value; } }
                1 => match v.pointer_mut(parent) {
                    Some(serde_json::Value::Object(m)) => { m.remove(last); }
                    Some(serde_json::Value::Array(a)) => { if let Ok(i) = last.parse::<usize>() && i < a.len() { a.remove(i); } }
                    _ => {}
                },
                _ => { if let Some(serde_json::Value::Object(m)) = v.pointer_mut(&p) { m.insert(key, value); } }
            }
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        proptest::prop_assert!(readings_agree(&bytes).is_ok(), "{}", readings_agree(&bytes).unwrap_err());
    }
}

/// A record with every field drawn from `next` (a random source): present or absent,
/// and text, numbers and timestamps from pools of values that are hard to encode.
fn arbitrary_record(next: &mut impl FnMut() -> u64) -> AuditRecord {
    const TEXTS: [&str; 14] = [
        "",
        "plain",
        "quote\"d",
        "back\\slash",
        "ctl\u{1}x",
        "nul\u{0}",
        "é",
        "😀 emoji",
        "\u{2028}line",
        "tab\there",
        "/slash/",
        "{\"json\":[1,2]}",
        "\u{ffff}",
        "ascii and more ascii and more",
    ];
    let mut pick = |n: u64| next() % n;
    let text = |pick: &mut dyn FnMut(u64) -> u64| {
        let t = TEXTS[pick(TEXTS.len() as u64) as usize];
        if pick(4) == 0 { format!("{t}{}", pick(1000)) } else { t.to_owned() }
    };
    let mut r = full();
    r.extensions.clear();
    r.schema_version = ["1.0", "1.3", "1.10"][pick(3) as usize].into();
    r.record_id = text(&mut pick);
    r.seq = [0, 1, u64::MAX, 1 << 53][pick(4) as usize];
    let ns = [0i64, 1, -1, i64::MAX / 2, 1_764_547_200_123_456_789][pick(5) as usize];
    r.started_at = Timestamp::from_unix_nanos(ns);
    r.first_byte_at = (pick(2) == 0).then(|| Timestamp::from_unix_nanos(ns.saturating_add(1)));
    r.http.status = [None, Some(0), Some(200), Some(u16::MAX)][pick(4) as usize];
    r.http.outcome = [Outcome::Completed, Outcome::Error, Outcome::Aborted][pick(3) as usize];
    r.http.error = (pick(2) == 0).then(|| text(&mut pick));
    r.http.streaming = pick(2) == 0;
    r.http.request.captured = (pick(2) == 0).then(|| text(&mut pick));
    r.http.response.capture =
        [CaptureMode::None, CaptureMode::Digest, CaptureMode::Redacted, CaptureMode::Full][pick(4) as usize];
    r.http.response.truncated = pick(2) == 0;
    r.caller.subject = (pick(2) == 0).then(|| text(&mut pick));
    let floats = [0.0, -0.0, 0.1, 1e-300, f64::MAX, 5e-324, 0.30000000000000004, 123456789.125];
    let float = |pick: &mut dyn FnMut(u64) -> u64| {
        let f = f64::from_bits(pick(u64::MAX));
        if pick(2) == 0 && f.is_finite() { f } else { floats[pick(floats.len() as u64) as usize] }
    };
    let q = &mut r.gen_ai.request;
    q.temperature = (pick(2) == 0).then(|| float(&mut pick));
    q.top_p = (pick(2) == 0).then(|| float(&mut pick));
    q.seed = [None, Some(i64::MIN), Some(i64::MAX), Some(0), Some(-1)][pick(5) as usize];
    q.max_tokens = [None, Some(0), Some(u64::MAX)][pick(3) as usize];
    q.stop_sequences = (0..pick(3)).map(|_| text(&mut pick)).collect();
    q.stream = [None, Some(true), Some(false)][pick(3) as usize];
    r.gen_ai.response.finish_reasons = (0..pick(3)).map(|_| text(&mut pick)).collect();
    r.gen_ai.usage.cached_input_tokens = [None, Some(7)][pick(2) as usize];
    if pick(2) == 0 {
        r.provenance.parameters.insert(text(&mut pick), serde_json::json!({"nested": [1, "two", {"three": null}]}));
        r.provenance.parameters.insert("n".into(), serde_json::json!(float(&mut pick)));
    }
    r.provenance.tool_calls = (0..pick(3))
        .map(|_| ToolCall {
            id: (pick(2) == 0).then(|| text(&mut pick)),
            name: text(&mut pick),
            arguments_digest: None,
        })
        .collect();
    r.output_sources = (0..pick(3))
        .map(|_| OutputSource {
            uri: text(&mut pick),
            title: (pick(2) == 0).then(|| text(&mut pick)),
            score: (pick(2) == 0).then(|| float(&mut pick)),
            retrieved_at: (pick(2) == 0).then(|| Timestamp::from_unix_nanos(ns)),
            ..Default::default()
        })
        .collect();
    r.watermarks = (0..pick(2)).map(|_| Watermark { scheme: text(&mut pick), ..Default::default() }).collect();
    r.digital_source_type = (pick(2) == 0).then(|| text(&mut pick));
    r.disclosure = (pick(2) == 0).then(|| Disclosure { method: text(&mut pick), text: None });
    r.safeguards
        .iter_mut()
        .for_each(|s| s.action = [SafeguardAction::Blocked, SafeguardAction::Allowed][pick(2) as usize]);
    r.records_lost_before = [0, 1, u64::MAX][pick(3) as usize];
    r.attributes = (0..pick(4)).map(|_| (text(&mut pick), text(&mut pick))).collect();
    r
}

/// A small deterministic random source (splitmix64) from a proptest seed.
fn rng(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn a_record_is_stored_as_serde_json_would_write_it() {
    // The stored bytes are what is hashed; the record writer must not change them.
    let mut next = rng(7);
    let mut records = vec![sample(), full(), AuditRecord::new("x", Timestamp::from_unix_nanos(0))];
    records.extend((0..512).map(|_| arbitrary_record(&mut next)));
    for r in records {
        let want = serde_json::to_vec(&r).unwrap();
        assert_eq!(r.to_json(), want, "{}", String::from_utf8_lossy(&want));
        let mut appended = b"[".to_vec();
        r.write_json(&mut appended);
        assert_eq!(appended[1..], want[..]);
    }
}

#[test]
fn the_fast_reading_takes_what_the_journal_writes() {
    let mut no_ext = full();
    no_ext.extensions.clear();
    for r in [sample(), no_ext, AuditRecord::new("x", Timestamp::from_unix_nanos(0))] {
        let bytes = r.to_json();
        let fast = view::fast::parse(&bytes).expect("the journal's own shape is read fast");
        assert_eq!(Some(&fast), RecordView::parse_serde(&bytes).ok().as_ref());
        assert_eq!(fast.into_record(), r);
    }
    // What it leaves to serde: a newer minor's field, whitespace, keys out of order.
    let bytes = full().to_json();
    assert!(view::fast::parse(&bytes).is_none(), "extensions go to serde");
    let spaced = String::from_utf8(sample().to_json()).unwrap().replacen(',', ", ", 1);
    assert!(view::fast::parse(spaced.as_bytes()).is_none());
    assert!(RecordView::parse(spaced.as_bytes()).is_ok(), "serde still reads it");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

    /// Any record the journal could write is read fast, and as serde reads it.
    #[test]
    fn the_fast_reading_agrees_with_serde_on_arbitrary_records(seed in proptest::prelude::any::<u64>()) {
        let r = arbitrary_record(&mut rng(seed));
        let bytes = r.to_json();
        let fast = view::fast::parse(&bytes);
        proptest::prop_assert!(fast.is_some(), "not read fast: {}", String::from_utf8_lossy(&bytes));
        let serde = RecordView::parse_serde(&bytes).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(fast.as_ref(), serde.as_ref().ok());
        // As the owned record reads it, which is `r` itself, floats to the bit.
        proptest::prop_assert_eq!(fast.map(RecordView::into_record), AuditRecord::from_json(&bytes).ok());
        proptest::prop_assert_eq!(AuditRecord::from_json(&bytes).ok(), Some(r));
    }

    /// Whatever random edits do to those bytes, the fast reading accepts only what serde
    /// accepts, and reads it the same.
    #[test]
    fn the_fast_reading_never_accepts_what_serde_refuses(
        seed in proptest::prelude::any::<u64>(),
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), 0u8..3, proptest::prelude::any::<u8>()), 1..4),
    ) {
        let mut bytes = arbitrary_record(&mut rng(seed)).to_json();
        const TOKENS: &[u8] = b"{}[],:\"\\0123456789-+.eEtrufalsn u";
        for (at, op, b) in edits {
            let at = at % (bytes.len() + 1);
            let b = if b % 2 == 0 { TOKENS[usize::from(b / 2) % TOKENS.len()] } else { b };
            match op {
                0 if at < bytes.len() => bytes[at] = b,
                1 => bytes.insert(at, b),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        if let Some(fast) = view::fast::parse(&bytes) {
            let serde = RecordView::parse_serde(&bytes);
            proptest::prop_assert!(serde.is_ok(), "fast accepted what serde refuses ({}): {}", serde.as_ref().unwrap_err(), String::from_utf8_lossy(&bytes));
            proptest::prop_assert_eq!(Some(fast), serde.ok());
        }
    }
}

#[test]
fn the_fast_reading_agrees_with_serde_on_edge_case_tokens() {
    let mut r = full();
    r.extensions.clear();
    let good = String::from_utf8(r.to_json()).unwrap();
    let ints = [
        "0",
        "01",
        "00",
        "-0",
        "-1",
        "1.0",
        "1e2",
        "1E2",
        "18446744073709551615",
        "18446744073709551616",
        "+1",
        "1 ",
        "true",
        "null",
        "\"7\"",
    ];
    let floats = [
        "0",
        "1.",
        ".5",
        "+1",
        "-",
        "1e400",
        "-1e400",
        "01.5",
        "1E5",
        "1e-5",
        "0.1e+1",
        "-0.0",
        "1e",
        "2.5E-3",
        "123456789012345678901234567890",
        "null",
        "\"0.2\"",
    ];
    let texts = [
        "\"\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\ud800\"",
        "\"\\ud800\\udc00\"",
        "\"\\uDBFF\\uDFFF\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\/\\b\\f\\n\\r\\t\"",
        "\"\\u0000\"",
        "\"a\u{1}b\"",
        "\"tab\there\"",
        "\"\\\"\"",
        "\"\\\\\"",
        "\"é😀\"",
        "null",
        "1",
        "\"unterminated",
    ];
    let mut cases = 0;
    let mut fast_taken = 0;
    for (field, tokens) in [
        ("\"seq\":7", &ints[..]),
        ("\"status\":200", &ints[..]),
        ("\"bytes\":10", &ints[..]),
        ("\"seed\":-7", &ints[..]),
        ("\"temperature\":0.2", &floats[..]),
        ("\"score\":0.9", &floats[..]),
        ("\"method\":\"POST\"", &texts[..]),
        ("\"error\":\"upstream said \\\"no\\\"\\n\"", &texts[..]),
        ("\"outcome\":\"completed\"", &texts[..]),
        ("\"team\":\"search\"", &texts[..]),
    ] {
        assert!(good.contains(field), "{field} in {good}");
        let key = &field[..field.find(':').unwrap() + 1];
        for tok in tokens {
            let bytes = good.replacen(field, &format!("{key}{tok}"), 1);
            cases += 1;
            if let Some(fast) = view::fast::parse(bytes.as_bytes()) {
                fast_taken += 1;
                let serde = RecordView::parse_serde(bytes.as_bytes());
                assert!(serde.is_ok(), "fast accepted {key}{tok}, serde says {}", serde.unwrap_err());
                assert_eq!(Some(fast), serde.ok(), "{key}{tok}");
            }
            readings_agree(bytes.as_bytes()).unwrap();
        }
    }
    // Not vacuous: the fast reading took the valid tokens.
    assert!(fast_taken > 20 && fast_taken < cases, "{fast_taken} of {cases}");
}

#[test]
fn the_fast_reading_leaves_deeply_nested_parameters_to_serde() {
    // serde_json stops at 128 levels counted from the record's root; `parameters` values
    // sit three levels down, so the fast reading must not count from the value itself.
    let mut r = full();
    r.extensions.clear();
    let good = String::from_utf8(r.to_json()).unwrap();
    for depth in [10, 100, 124, 125, 126, 127, 200] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let bytes = good.replacen("{\"type\":\"json_object\"}", &nested, 1);
        assert!(bytes.contains(&nested));
        if let Some(fast) = view::fast::parse(bytes.as_bytes()) {
            let serde = RecordView::parse_serde(bytes.as_bytes());
            assert!(serde.is_ok(), "depth {depth}: fast accepted what serde refuses: {}", serde.unwrap_err());
            assert_eq!(Some(fast), serde.ok());
        }
        readings_agree(bytes.as_bytes()).unwrap();
    }
}
