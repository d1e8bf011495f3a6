//! The archive's Arrow/Parquet schema, and records to `RecordBatch`es with typed
//! builders (one borrowed reading of each payload, a [`RecordView`], then column by
//! column).
//!
//! The chain columns (`chain_id, seq, prev_hash, hash, payload`) keep the exact hashed
//! bytes, so the archive alone re-verifies and proves; every other column is a
//! projection of the payload for queries. Types are ones every engine reads: strings,
//! int64, double, bool, binary, lists of structs, a string map, and timestamps as
//! `TIMESTAMP(MICROS, UTC)`.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, MapBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use kiroku_schemas::record::RecordView;
use kiroku_schemas::{Hash, Timestamp};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn s(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn tool_call_fields() -> Fields {
    Fields::from(vec![s("id"), s("name"), s("arguments_digest")])
}

fn source_fields() -> Fields {
    Fields::from(vec![
        Field::new("uri", DataType::Utf8, false),
        s("title"),
        s("content_digest"),
        s("locator"),
        Field::new("score", DataType::Float64, true),
        s("license"),
        s("rights_holder"),
        Field::new("retrieved_at", ts(), true),
    ])
}

fn watermark_fields() -> Fields {
    Fields::from(vec![
        Field::new("scheme", DataType::Utf8, false),
        s("key_id"),
        s("payload_digest"),
        s("manifest_digest"),
        s("applied_by"),
        s("detector"),
        Field::new("detector_score", DataType::Float64, true),
    ])
}

fn safeguard_fields() -> Fields {
    Fields::from(vec![
        Field::new("policy_id", DataType::Utf8, false),
        s("policy_version"),
        Field::new("action", DataType::Utf8, false),
        s("stage"),
        s("category"),
        Field::new("score", DataType::Float64, true),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
}

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn map_fields() -> (Field, Field) {
    (Field::new("keys", DataType::Utf8, false), Field::new("values", DataType::Utf8, true))
}

/// The archive schema (version 1). Checked in as `collector/schema/records.v1.txt`.
pub fn schema() -> SchemaRef {
    let (k, v) = map_fields();
    let entries = Field::new("entries", DataType::Struct(Fields::from(vec![k, v])), false);
    Arc::new(Schema::new(vec![
        Field::new("chain_id", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("prev_hash", DataType::Binary, false),
        Field::new("hash", DataType::Binary, false),
        Field::new("payload", DataType::Binary, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("schema_version", DataType::Utf8, false),
        Field::new("started_at", ts(), false),
        Field::new("first_byte_at", ts(), true),
        Field::new("finished_at", ts(), false),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("ttfb_ms", DataType::Float64, true),
        Field::new("method", DataType::Utf8, false),
        Field::new("route", DataType::Utf8, false),
        Field::new("status", DataType::Int32, true),
        Field::new("outcome", DataType::Utf8, false),
        s("error"),
        Field::new("streaming", DataType::Boolean, false),
        Field::new("request_bytes", DataType::Int64, false),
        s("request_blake3"),
        s("request_content_type"),
        s("request_captured"),
        Field::new("response_bytes", DataType::Int64, false),
        s("response_blake3"),
        s("response_content_type"),
        s("response_captured"),
        s("caller_subject"),
        s("caller_tenant"),
        s("client_addr"),
        s("trace_id"),
        s("span_id"),
        s("operation"),
        s("provider"),
        s("model"),
        s("request_model"),
        s("response_model"),
        s("response_id"),
        Field::new("temperature", DataType::Float64, true),
        Field::new("top_p", DataType::Float64, true),
        Field::new("max_tokens", DataType::Int64, true),
        Field::new("seed", DataType::Int64, true),
        Field::new("input_tokens", DataType::Int64, true),
        Field::new("output_tokens", DataType::Int64, true),
        Field::new("cached_input_tokens", DataType::Int64, true),
        Field::new("finish_reasons", list_of_strings(), true),
        s("model_version"),
        s("model_digest"),
        s("deployment"),
        s("system_prompt_digest"),
        s("output_digest"),
        Field::new("tool_calls", list_of(tool_call_fields()), true),
        Field::new("output_sources", list_of(source_fields()), true),
        Field::new("watermarks", list_of(watermark_fields()), true),
        s("digital_source_type"),
        s("disclosure_method"),
        Field::new("safeguards", list_of(safeguard_fields()), true),
        Field::new("records_lost_before", DataType::Int64, false),
        Field::new("attributes", DataType::Map(Arc::new(entries), false), true),
    ]))
}

/// Columns that get bloom filters (point lookups by `kiroku find`).
pub const BLOOM_COLUMNS: [&str; 3] = ["record_id", "trace_id", "output_digest"];

/// One row's chain position and exact bytes.
pub struct ChainRow<'a> {
    /// Seq.
    pub seq: u64,
    /// Previous record hash.
    pub prev: &'a Hash,
    /// Record hash.
    pub hash: &'a Hash,
    /// Exact payload bytes.
    pub payload: &'a [u8],
}

fn millis(a: Timestamp, b: Timestamp) -> f64 {
    (b.unix_nanos() - a.unix_nanos()) as f64 / 1e6
}

/// An optional text column. Most are null in most records: a null is only counted
/// here, and a run of them reaches the builder at once (one fill of its null bitmap and
/// offsets per run, not one write of each per row).
#[derive(Default)]
struct OptStr {
    b: StringBuilder,
    nulls: usize,
}

impl OptStr {
    #[inline]
    fn push(&mut self, v: Option<&str>) {
        match v {
            None => self.nulls += 1,
            Some(v) => {
                self.flush();
                self.b.append_value(v);
            }
        }
    }

    fn flush(&mut self) {
        if self.nulls > 0 {
            self.b.append_nulls(self.nulls);
            self.nulls = 0;
        }
    }

    fn finish(&mut self) -> arrow_array::StringArray {
        self.flush();
        self.b.finish()
    }
}

/// Builders for one batch.
pub struct BatchBuilder {
    chain_id: StringBuilder,
    seq: Int64Builder,
    prev_hash: BinaryBuilder,
    hash: BinaryBuilder,
    payload: BinaryBuilder,
    record_id: StringBuilder,
    schema_version: StringBuilder,
    started_at: TimestampMicrosecondBuilder,
    first_byte_at: TimestampMicrosecondBuilder,
    finished_at: TimestampMicrosecondBuilder,
    duration_ms: Float64Builder,
    ttfb_ms: Float64Builder,
    method: StringBuilder,
    route: StringBuilder,
    status: Int32Builder,
    outcome: StringBuilder,
    error: OptStr,
    streaming: BooleanBuilder,
    request_bytes: Int64Builder,
    request_blake3: OptStr,
    request_content_type: OptStr,
    request_captured: OptStr,
    response_bytes: Int64Builder,
    response_blake3: OptStr,
    response_content_type: OptStr,
    response_captured: OptStr,
    caller_subject: OptStr,
    caller_tenant: OptStr,
    client_addr: OptStr,
    trace_id: OptStr,
    span_id: OptStr,
    operation: OptStr,
    provider: OptStr,
    model: OptStr,
    request_model: OptStr,
    response_model: OptStr,
    response_id: OptStr,
    temperature: Float64Builder,
    top_p: Float64Builder,
    max_tokens: Int64Builder,
    seed: Int64Builder,
    input_tokens: Int64Builder,
    output_tokens: Int64Builder,
    cached_input_tokens: Int64Builder,
    finish_reasons: ListBuilder<StringBuilder>,
    model_version: OptStr,
    model_digest: OptStr,
    deployment: OptStr,
    system_prompt_digest: OptStr,
    output_digest: OptStr,
    tool_calls: ListBuilder<StructBuilder>,
    output_sources: ListBuilder<StructBuilder>,
    watermarks: ListBuilder<StructBuilder>,
    digital_source_type: OptStr,
    disclosure_method: OptStr,
    safeguards: ListBuilder<StructBuilder>,
    records_lost_before: Int64Builder,
    attributes: MapBuilder<StringBuilder, StringBuilder>,
    rows: usize,
}

fn struct_list(fields: Fields) -> ListBuilder<StructBuilder> {
    let f = Field::new("item", DataType::Struct(fields.clone()), true);
    ListBuilder::new(StructBuilder::from_fields(fields, 0)).with_field(Arc::new(f))
}

fn ts_builder() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

/// `StructBuilder` children are typed at run time; these fields are built in this file
/// with the types declared above, so a mismatch is a programming error caught by tests.
fn child<T: arrow_array::builder::ArrayBuilder>(b: &mut StructBuilder, i: usize) -> &mut T {
    b.field_builder::<T>(i).unwrap_or_else(|| panic!("struct child {i} has the declared builder type"))
}

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(to_i64)
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(1024, 0)
    }
}

impl BatchBuilder {
    /// Builders sized for `rows` records whose payloads total `payload_bytes`, so that the
    /// largest columns never grow by copying.
    pub fn with_capacity(rows: usize, payload_bytes: usize) -> Self {
        let (k, v) = map_fields();
        Self {
            chain_id: StringBuilder::with_capacity(rows, rows * 36),
            seq: Int64Builder::with_capacity(rows),
            prev_hash: BinaryBuilder::with_capacity(rows, rows * 32),
            hash: BinaryBuilder::with_capacity(rows, rows * 32),
            payload: BinaryBuilder::with_capacity(rows, payload_bytes),
            record_id: StringBuilder::with_capacity(rows, rows * 36),
            schema_version: StringBuilder::new(),
            started_at: ts_builder(),
            first_byte_at: ts_builder(),
            finished_at: ts_builder(),
            duration_ms: Float64Builder::new(),
            ttfb_ms: Float64Builder::new(),
            method: StringBuilder::new(),
            route: StringBuilder::new(),
            status: Int32Builder::new(),
            outcome: StringBuilder::new(),
            error: OptStr::default(),
            streaming: BooleanBuilder::new(),
            request_bytes: Int64Builder::new(),
            request_blake3: OptStr::default(),
            request_content_type: OptStr::default(),
            request_captured: OptStr::default(),
            response_bytes: Int64Builder::new(),
            response_blake3: OptStr::default(),
            response_content_type: OptStr::default(),
            response_captured: OptStr::default(),
            caller_subject: OptStr::default(),
            caller_tenant: OptStr::default(),
            client_addr: OptStr::default(),
            trace_id: OptStr::default(),
            span_id: OptStr::default(),
            operation: OptStr::default(),
            provider: OptStr::default(),
            model: OptStr::default(),
            request_model: OptStr::default(),
            response_model: OptStr::default(),
            response_id: OptStr::default(),
            temperature: Float64Builder::new(),
            top_p: Float64Builder::new(),
            max_tokens: Int64Builder::new(),
            seed: Int64Builder::new(),
            input_tokens: Int64Builder::new(),
            output_tokens: Int64Builder::new(),
            cached_input_tokens: Int64Builder::new(),
            finish_reasons: ListBuilder::new(StringBuilder::new()),
            model_version: OptStr::default(),
            model_digest: OptStr::default(),
            deployment: OptStr::default(),
            system_prompt_digest: OptStr::default(),
            output_digest: OptStr::default(),
            tool_calls: struct_list(tool_call_fields()),
            output_sources: struct_list(source_fields()),
            watermarks: struct_list(watermark_fields()),
            digital_source_type: OptStr::default(),
            disclosure_method: OptStr::default(),
            safeguards: struct_list(safeguard_fields()),
            records_lost_before: Int64Builder::new(),
            attributes: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
                .with_keys_field(Arc::new(k))
                .with_values_field(Arc::new(v)),
            rows: 0,
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row was appended.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append one record, its payload included.
    pub fn push(&mut self, chain: &str, row: &ChainRow<'_>, r: &RecordView<'_>) {
        self.payload.append_value(row.payload);
        self.push_projected(chain, row, r);
    }

    /// Append one record but not its payload: the batch then comes from
    /// [`finish_with_payloads`](Self::finish_with_payloads), which takes the payload
    /// column whole (built without copying from where the payloads already lie).
    pub fn push_projected(&mut self, chain: &str, row: &ChainRow<'_>, r: &RecordView<'_>) {
        self.rows += 1;
        self.chain_id.append_value(chain);
        self.seq.append_value(to_i64(row.seq));
        self.prev_hash.append_value(row.prev);
        self.hash.append_value(row.hash);
        self.record_id.append_value(&r.record_id);
        self.schema_version.append_value(&r.schema_version);
        self.started_at.append_value(r.started_at.unix_micros());
        self.first_byte_at.append_option(r.first_byte_at.map(Timestamp::unix_micros));
        self.finished_at.append_value(r.finished_at.unix_micros());
        self.duration_ms.append_value(millis(r.started_at, r.finished_at));
        self.ttfb_ms.append_option(r.first_byte_at.map(|t| millis(r.started_at, t)));
        let h = &r.http;
        self.method.append_value(&h.method);
        self.route.append_value(&h.route);
        self.status.append_option(h.status.map(i32::from));
        self.outcome.append_value(h.outcome.as_str());
        self.error.push(h.error.as_deref());
        self.streaming.append_value(h.streaming);
        self.request_bytes.append_value(to_i64(h.request.bytes));
        self.request_blake3.push(h.request.blake3.as_deref());
        self.request_content_type.push(h.request.content_type.as_deref());
        self.request_captured.push(h.request.captured.as_deref());
        self.response_bytes.append_value(to_i64(h.response.bytes));
        self.response_blake3.push(h.response.blake3.as_deref());
        self.response_content_type.push(h.response.content_type.as_deref());
        self.response_captured.push(h.response.captured.as_deref());
        self.caller_subject.push(r.caller.subject.as_deref());
        self.caller_tenant.push(r.caller.tenant.as_deref());
        self.client_addr.push(r.caller.client_addr.as_deref());
        self.trace_id.push(r.trace.trace_id.as_deref());
        self.span_id.push(r.trace.span_id.as_deref());
        let g = &r.gen_ai;
        self.operation.push(g.operation.name.as_deref());
        self.provider.push(g.provider.name.as_deref());
        self.model.push(r.effective_model());
        self.request_model.push(g.request.model.as_deref());
        self.response_model.push(g.response.model.as_deref());
        self.response_id.push(g.response.id.as_deref());
        self.temperature.append_option(g.request.temperature);
        self.top_p.append_option(g.request.top_p);
        self.max_tokens.append_option(opt_i64(g.request.max_tokens));
        self.seed.append_option(g.request.seed);
        self.input_tokens.append_option(opt_i64(g.usage.input_tokens));
        self.output_tokens.append_option(opt_i64(g.usage.output_tokens));
        self.cached_input_tokens.append_option(opt_i64(g.usage.cached_input_tokens));
        for f in &g.response.finish_reasons {
            self.finish_reasons.values().append_value(f);
        }
        self.finish_reasons.append(true);
        let p = &r.provenance;
        self.model_version.push(p.model_version.as_deref());
        self.model_digest.push(p.model_digest.as_deref());
        self.deployment.push(p.deployment.as_deref());
        self.system_prompt_digest.push(p.system_prompt_digest.as_deref());
        self.output_digest.push(p.output_digest.as_deref());
        for t in &p.tool_calls {
            let b = self.tool_calls.values();
            child::<StringBuilder>(b, 0).append_option(t.id.as_deref());
            child::<StringBuilder>(b, 1).append_value(&t.name);
            child::<StringBuilder>(b, 2).append_option(t.arguments_digest.as_deref());
            b.append(true);
        }
        self.tool_calls.append(true);
        for src in &r.output_sources {
            let b = self.output_sources.values();
            child::<StringBuilder>(b, 0).append_value(&src.uri);
            child::<StringBuilder>(b, 1).append_option(src.title.as_deref());
            child::<StringBuilder>(b, 2).append_option(src.content_digest.as_deref());
            child::<StringBuilder>(b, 3).append_option(src.locator.as_deref());
            child::<Float64Builder>(b, 4).append_option(src.score);
            child::<StringBuilder>(b, 5).append_option(src.license.as_deref());
            child::<StringBuilder>(b, 6).append_option(src.rights_holder.as_deref());
            child::<TimestampMicrosecondBuilder>(b, 7).append_option(src.retrieved_at.map(Timestamp::unix_micros));
            b.append(true);
        }
        self.output_sources.append(true);
        for w in &r.watermarks {
            let b = self.watermarks.values();
            child::<StringBuilder>(b, 0).append_value(&w.scheme);
            child::<StringBuilder>(b, 1).append_option(w.key_id.as_deref());
            child::<StringBuilder>(b, 2).append_option(w.payload_digest.as_deref());
            child::<StringBuilder>(b, 3).append_option(w.manifest_digest.as_deref());
            child::<StringBuilder>(b, 4).append_option(w.applied_by.as_deref());
            child::<StringBuilder>(b, 5).append_option(w.detector.as_deref());
            child::<Float64Builder>(b, 6).append_option(w.detector_score);
            b.append(true);
        }
        self.watermarks.append(true);
        self.digital_source_type.push(r.digital_source_type.as_deref());
        self.disclosure_method.push(r.disclosure.as_ref().map(|d| &*d.method));
        for sg in &r.safeguards {
            let b = self.safeguards.values();
            child::<StringBuilder>(b, 0).append_value(&sg.policy_id);
            child::<StringBuilder>(b, 1).append_option(sg.policy_version.as_deref());
            let action = sg.action.as_str();
            child::<StringBuilder>(b, 2).append_value(action);
            child::<StringBuilder>(b, 3).append_option(sg.stage.as_deref());
            child::<StringBuilder>(b, 4).append_option(sg.category.as_deref());
            child::<Float64Builder>(b, 5).append_option(sg.score);
            b.append(true);
        }
        self.safeguards.append(true);
        self.records_lost_before.append_value(to_i64(r.records_lost_before));
        for (k, v) in &r.attributes {
            self.attributes.keys().append_value(k);
            self.attributes.values().append_value(v);
        }
        // Appending a map entry only fails when keys and values disagree in length,
        // which the loop above rules out.
        let _ = self.attributes.append(true);
    }

    /// The batch of everything appended with [`push`](Self::push); the builder is empty
    /// afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let payload = self.payload.finish();
        self.finish_with_payloads(payload)
    }

    /// The batch of everything appended with [`push_projected`](Self::push_projected),
    /// with `payload` as its payload column (one value per row, in order); the builder is
    /// empty afterwards.
    pub fn finish_with_payloads(&mut self, payload: BinaryArray) -> Result<RecordBatch, ArrowError> {
        if payload.len() != self.rows {
            return Err(ArrowError::InvalidArgumentError(format!("{} payloads for {} rows", payload.len(), self.rows)));
        }
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.chain_id.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.prev_hash.finish()),
            Arc::new(self.hash.finish()),
            Arc::new(payload),
            Arc::new(self.record_id.finish()),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.started_at.finish()),
            Arc::new(self.first_byte_at.finish()),
            Arc::new(self.finished_at.finish()),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.ttfb_ms.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.streaming.finish()),
            Arc::new(self.request_bytes.finish()),
            Arc::new(self.request_blake3.finish()),
            Arc::new(self.request_content_type.finish()),
            Arc::new(self.request_captured.finish()),
            Arc::new(self.response_bytes.finish()),
            Arc::new(self.response_blake3.finish()),
            Arc::new(self.response_content_type.finish()),
            Arc::new(self.response_captured.finish()),
            Arc::new(self.caller_subject.finish()),
            Arc::new(self.caller_tenant.finish()),
            Arc::new(self.client_addr.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.operation.finish()),
            Arc::new(self.provider.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.request_model.finish()),
            Arc::new(self.response_model.finish()),
            Arc::new(self.response_id.finish()),
            Arc::new(self.temperature.finish()),
            Arc::new(self.top_p.finish()),
            Arc::new(self.max_tokens.finish()),
            Arc::new(self.seed.finish()),
            Arc::new(self.input_tokens.finish()),
            Arc::new(self.output_tokens.finish()),
            Arc::new(self.cached_input_tokens.finish()),
            Arc::new(self.finish_reasons.finish()),
            Arc::new(self.model_version.finish()),
            Arc::new(self.model_digest.finish()),
            Arc::new(self.deployment.finish()),
            Arc::new(self.system_prompt_digest.finish()),
            Arc::new(self.output_digest.finish()),
            Arc::new(self.tool_calls.finish()),
            Arc::new(self.output_sources.finish()),
            Arc::new(self.watermarks.finish()),
            Arc::new(self.digital_source_type.finish()),
            Arc::new(self.disclosure_method.finish()),
            Arc::new(self.safeguards.finish()),
            Arc::new(self.records_lost_before.finish()),
            Arc::new(self.attributes.finish()),
        ];
        RecordBatch::try_new(schema(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiroku_schemas::AuditRecord;

    /// The checked-in schema is the one the code writes. Update it deliberately with
    /// `KIROKU_BLESS=1 cargo test -p kiroku-collector` (and say so in the changelog:
    /// queries depend on it).
    #[test]
    fn schema_is_stable() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/records.v1.txt");
        let mut text = String::new();
        for f in schema().fields() {
            text.push_str(&format!("{}: {} (nullable: {})\n", f.name(), f.data_type(), f.is_nullable()));
        }
        if std::env::var_os("KIROKU_BLESS").is_some() {
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/schema")).unwrap();
            std::fs::write(path, &text).unwrap();
        }
        assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), text, "archive schema changed");
    }

    #[test]
    fn runs_of_nulls_and_values_keep_their_rows() {
        let rows = [None, None, Some("a"), None, Some(""), Some("b"), None, None];
        let mut c = OptStr::default();
        for v in rows {
            c.push(v);
        }
        let got = c.finish();
        assert_eq!(got.iter().collect::<Vec<_>>(), rows);
        assert_eq!(got.null_count(), 5);
        c.push(None);
        assert_eq!(c.finish().iter().collect::<Vec<_>>(), [None], "empty again after finishing");
    }

    #[test]
    fn a_full_record_becomes_one_row() {
        let mut r = AuditRecord::new("id-1", Timestamp::from_unix_nanos(1_000_000_000));
        r.finished_at = Timestamp::from_unix_nanos(1_500_000_000);
        r.gen_ai.request.model = Some("m".into());
        r.gen_ai.response.finish_reasons = vec!["stop".into()];
        r.output_sources.push(kiroku_schemas::record::OutputSource { uri: "u".into(), ..Default::default() });
        r.attributes.insert("k".into(), "v".into());
        r.safeguards.push(kiroku_schemas::record::SafeguardDecision {
            policy_id: "p".into(),
            policy_version: None,
            action: kiroku_schemas::record::SafeguardAction::Flagged,
            stage: None,
            category: None,
            score: None,
        });
        let mut b = BatchBuilder::default();
        let h = [1u8; 32];
        let (one, two) = (r.to_json(), AuditRecord::new("id-2", Timestamp::from_unix_nanos(0)).to_json());
        b.push("c", &ChainRow { seq: 0, prev: &[0; 32], hash: &h, payload: b"{}" }, &RecordView::parse(&one).unwrap());
        b.push("c", &ChainRow { seq: 1, prev: &h, hash: &[2; 32], payload: b"{}" }, &RecordView::parse(&two).unwrap());
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema());
        let d = batch.column_by_name("duration_ms").unwrap();
        let d = d.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        assert_eq!(d.value(0), 500.0);
    }

    /// A float column holds the very value the application recorded, not its neighbour:
    /// each value below is read one ULP off by serde_json's default float parsing.
    #[test]
    fn floats_reach_the_columns_to_the_bit() {
        let values = [0.0010030090270812437, 0.010030090270812437, 0.011033099297893681, 1.0715660391465826e-75];
        let mut b = BatchBuilder::default();
        for (i, v) in values.into_iter().enumerate() {
            let mut r = AuditRecord::new(format!("id-{i}"), Timestamp::from_unix_nanos(0));
            r.gen_ai.request.temperature = Some(v);
            r.gen_ai.request.top_p = Some(-v);
            let json = r.to_json();
            let row = ChainRow { seq: i as u64, prev: &[0; 32], hash: &[1; 32], payload: &json };
            b.push("c", &row, &RecordView::parse(&json).unwrap());
        }
        let batch = b.finish().unwrap();
        for (name, sign) in [("temperature", 1.0), ("top_p", -1.0)] {
            let c = batch.column_by_name(name).unwrap();
            let c = c.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
            let got: Vec<u64> = c.values().iter().map(|f| f.to_bits()).collect();
            let want: Vec<u64> = values.iter().map(|f| (sign * f).to_bits()).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
