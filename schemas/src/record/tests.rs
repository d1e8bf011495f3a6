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
