//! The audit record, version 1: one per AI inference.
//!
//! A record is stored as the exact JSON bytes that were hashed into the chain; readers
//! never re-serialise it for verification. Field names under `gen_ai` follow the
//! OpenTelemetry GenAI semantic conventions: the JSON path of each field is its attribute
//! name (`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...), so spans and records
//! agree. Everything else is kiroku's own vocabulary, documented on each type.
//!
//! Compatibility: `schema_version` is `MAJOR.MINOR`. A reader of major version 1 accepts
//! any minor version and keeps fields it does not know in [`AuditRecord::extensions`], so a
//! record from a newer writer survives a round trip unchanged in meaning.

mod exchange;
mod gen_ai;
mod governance;
mod json;
mod keyword;
mod plain_run;
pub mod view;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use exchange::{BodySummary, Caller, CaptureMode, HttpExchange, Outcome, TraceContext};
pub use gen_ai::{GenAi, GenAiOperation, GenAiProvider, GenAiRequest, GenAiResponse, GenAiUsage, Provenance, ToolCall};
pub use governance::{
    Disclosure, IPTC_TRAINED_ALGORITHMIC_MEDIA, OutputSource, SafeguardAction, SafeguardDecision, Watermark,
};
pub use keyword::Keyword;
pub use view::{AuditRecord as RecordView, Text};

use crate::{ChainId, Timestamp};

/// The schema version this crate writes.
pub const SCHEMA_VERSION: &str = "1.0";

/// The major version this crate reads; records of another major version are refused.
pub const SCHEMA_MAJOR: u32 = 1;

/// One audit record: what one inference was, who asked, what answered, on which sources
/// the answer was based, how it was marked, and what safeguards decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "kiroku audit record v1")]
pub struct AuditRecord {
    /// `MAJOR.MINOR` of the record schema (this crate writes [`SCHEMA_VERSION`]).
    pub schema_version: String,
    /// Unique id of this record (UUIDv7 text), also the id investigators search by.
    pub record_id: String,
    /// The hash chain holding this record.
    pub chain_id: ChainId,
    /// Position in the chain, dense from 0.
    pub seq: u64,
    /// When the request reached the audited service.
    pub started_at: Timestamp,
    /// When the first response body byte was produced (time to first token for streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_at: Option<Timestamp>,
    /// When the exchange ended (completed, failed or was abandoned).
    pub finished_at: Timestamp,
    /// The HTTP exchange: route, status, outcome, bodies.
    pub http: HttpExchange,
    /// Who called.
    #[serde(default, skip_serializing_if = "Caller::is_empty")]
    pub caller: Caller,
    /// W3C trace context of the request.
    #[serde(default, skip_serializing_if = "TraceContext::is_empty")]
    pub trace: TraceContext,
    /// OpenTelemetry GenAI attributes: operation, provider, request, response, usage.
    #[serde(default)]
    pub gen_ai: GenAi,
    /// Provenance beyond the semantic conventions: model version and digest, system
    /// prompt digest, output digest, tool calls.
    #[serde(default)]
    pub provenance: Provenance,
    /// The sources the output was based on (RAG documents, citations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_sources: Vec<OutputSource>,
    /// Watermarks and content credentials applied to or detected in the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<Watermark>,
    /// IPTC digital source type of the output, e.g.
    /// [`IPTC_TRAINED_ALGORITHMIC_MEDIA`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digital_source_type: Option<String>,
    /// How the user was told the output is AI-generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<Disclosure>,
    /// Safeguard decisions taken on input or output: the application's, or, when it
    /// records none, those the model provider states in its bodies (policy ids
    /// `provider.content_filter`: a `content_filter` finish reason, Azure OpenAI's
    /// content filter results; `provider.refusal`: Anthropic's `refusal` stop reason;
    /// `provider.moderation`: a moderation endpoint's verdict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safeguards: Vec<SafeguardDecision>,
    /// Records the journal could not write between the previous record of this chain and
    /// this one (non-zero only under `FailOpen`): a gap stated in the chain itself.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_lost_before: u64,
    /// Free attributes set by the application. Keys under `kiroku.` are kiroku's own
    /// notes about the record: `kiroku.sse_dropped` (how many server-sent lines or
    /// events of over 1 MiB the stream extraction dropped, so stream-derived fields may
    /// be incomplete), `kiroku.not_extracted` (a body over the layer's keep limit, or
    /// one with a content coding such as gzip, was hashed and counted but not read for
    /// extraction; a compressed one is not captured either) and `kiroku.finisher_error`
    /// (extraction or redaction failed; the record was kept without them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Fields written by a newer minor version that this reader does not know; kept so
    /// nothing is lost when a record is re-read.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why bytes are not an audit record this crate can read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not valid JSON for a record.
    #[error("record is not valid JSON for schema v1: {0}")]
    Json(#[from] serde_json::Error),
    /// The record's major schema version is not one this reader understands.
    #[error("record schema version {found:?} is not supported (this reader understands {SCHEMA_MAJOR}.x)")]
    UnsupportedVersion {
        /// The `schema_version` found in the record.
        found: String,
    },
}

impl AuditRecord {
    /// An empty record for `record_id` at `started_at`; the journal fills in `chain_id`
    /// and `seq` when it writes the record.
    pub fn new(record_id: impl Into<String>, started_at: Timestamp) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            record_id: record_id.into(),
            chain_id: ChainId([0; 16]),
            seq: 0,
            started_at,
            first_byte_at: None,
            finished_at: started_at,
            http: HttpExchange::default(),
            caller: Caller::default(),
            trace: TraceContext::default(),
            gen_ai: GenAi::default(),
            provenance: Provenance::default(),
            output_sources: Vec::new(),
            watermarks: Vec::new(),
            digital_source_type: None,
            disclosure: None,
            safeguards: Vec::new(),
            records_lost_before: 0,
            attributes: BTreeMap::new(),
            extensions: BTreeMap::new(),
        }
    }

    /// Append the JSON bytes to store to `out` (what [`to_json`](Self::to_json)
    /// returns, without allocating a new buffer). The bytes are those
    /// `serde_json::to_writer` writes for the record; a writer of the crate's own
    /// produces them, scanning strings for escapes a word at a time.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, and these types serialise without error (every
        // map key is a string).
        let _ = json::write(self, out);
    }

    /// Parse a record from its stored JSON bytes, refusing other major versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        let record: Self = serde_json::from_slice(bytes)?;
        let major = record.schema_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
        if major != Some(SCHEMA_MAJOR) {
            return Err(RecordError::UnsupportedVersion { found: record.schema_version });
        }
        Ok(record)
    }

    /// The model that served the request: the response's model, else the one asked for
    /// (the archive's `model` column; [`RecordView::effective_model`] for a view).
    pub fn effective_model(&self) -> Option<&str> {
        self.gen_ai.response.model.as_deref().or(self.gen_ai.request.model.as_deref())
    }

    /// The JSON bytes to store (compact, fields in declaration order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out);
        out
    }

    /// The JSON Schema of the record, as checked in at `schemas/json/audit-record.v1.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(AuditRecord)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
