//! A borrowed reading of a stored record: the fields of [`AuditRecord`](crate::AuditRecord), with text
//! borrowed from the payload bytes wherever it holds no JSON escape.
//!
//! Readers that project many records (the collector's Parquet columns, its
//! re-verification of an archive) need every field once and keep none of them. Parsing
//! into [`AuditRecord`](crate::AuditRecord) allocates and frees a `String` per text field (about 25 for a
//! typical record); a [`RecordView`](super::RecordView) allocates only for lists, maps and escaped text.
//!
//! A view accepts exactly the payloads [`AuditRecord::from_json`](crate::AuditRecord::from_json) accepts: the same field
//! names, defaults, duplicate and unknown field handling (the types below mirror the
//! record's types field for field, with the same serde attributes), and the same leaf
//! types (timestamps, chain ids, enums, numbers). [`RecordView::into_record`](AuditRecord::into_record) builds the
//! owned record with a struct literal of every field, so a field added to the record and
//! not to the view does not compile; the tests check both readings agree on every
//! record they generate and on malformed input.
//!
//! [`RecordView::parse`](super::RecordView::parse) first tries a one-pass reading of the
//! exact shape the journal writes (compact JSON, fields in declaration order), 1.3 µs
//! instead of serde's 2.1 µs for a typical record, and leaves every other payload, and
//! every error, to serde. A field added to the record and not to that reading makes it
//! leave the journal's records to serde too: correct, only slower, and caught by a test
//! that the journal's own output is read fast.
//!
//! ```
//! use kiroku_schemas::record::RecordView;
//! use kiroku_schemas::{AuditRecord, Timestamp};
//!
//! let mut r = AuditRecord::new("0193f000-0000-7000-8000-000000000001", Timestamp::from_unix_nanos(0));
//! r.gen_ai.request.model = Some("gpt-4o".into());
//! let bytes = r.to_json();
//! let view = RecordView::parse(&bytes)?;
//! assert_eq!(view.gen_ai.request.model.as_deref(), Some("gpt-4o"));
//! assert!(view.record_id.is_borrowed());
//! assert_eq!(view.into_record(), r);
//! # Ok::<(), kiroku_schemas::record::RecordError>(())
//! ```

pub(crate) mod fast;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{CaptureMode, GenAiUsage, Outcome, RecordError, SCHEMA_MAJOR, SafeguardAction};
use crate::record as owned;
use crate::{ChainId, Timestamp};

/// Text of a stored record: borrowed from the payload, or owned when the JSON string held
/// escapes that had to be decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// True when the text points into the payload (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    /// The text as an owned `String`.
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        d.deserialize_str(TextVisitor)
    }
}

fn own(t: Option<Text<'_>>) -> Option<String> {
    t.map(Text::into_owned)
}

fn own_all(v: Vec<Text<'_>>) -> Vec<String> {
    v.into_iter().map(Text::into_owned).collect()
}

/// [`owned::AuditRecord`], borrowed (exported as [`RecordView`](super::RecordView)). Each type
/// of this module carries the name of the record type it mirrors: serde's error messages
/// name the type, and both readings of a bad payload then report it in the same words.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[allow(missing_docs)]
pub struct AuditRecord<'a> {
    #[serde(borrow)]
    pub schema_version: Text<'a>,
    #[serde(borrow)]
    pub record_id: Text<'a>,
    pub chain_id: ChainId,
    pub seq: u64,
    pub started_at: Timestamp,
    #[serde(default)]
    pub first_byte_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    #[serde(borrow)]
    pub http: HttpExchange<'a>,
    #[serde(default, borrow)]
    pub caller: Caller<'a>,
    #[serde(default, borrow)]
    pub trace: TraceContext<'a>,
    #[serde(default, borrow)]
    pub gen_ai: GenAi<'a>,
    #[serde(default, borrow)]
    pub provenance: Provenance<'a>,
    #[serde(default, borrow)]
    pub output_sources: Vec<OutputSource<'a>>,
    #[serde(default, borrow)]
    pub watermarks: Vec<Watermark<'a>>,
    #[serde(default, borrow)]
    pub digital_source_type: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub disclosure: Option<Disclosure<'a>>,
    #[serde(default, borrow)]
    pub safeguards: Vec<SafeguardDecision<'a>>,
    #[serde(default)]
    pub records_lost_before: u64,
    #[serde(default, borrow)]
    pub attributes: BTreeMap<Text<'a>, Text<'a>>,
    /// Fields of a newer minor version (rare; owned like [`owned::AuditRecord::extensions`]).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl<'a> AuditRecord<'a> {
    /// Read a record from its stored JSON bytes, refusing other major versions (the same
    /// payloads as [`owned::AuditRecord::from_json`] are accepted and refused).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RecordError> {
        // The shape the journal writes, read in one pass; anything else, and every error,
        // is serde's.
        let view = match fast::parse(bytes) {
            Some(v) => v,
            None => Self::parse_serde(bytes)?,
        };
        let major = view.schema_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
        if major != Some(SCHEMA_MAJOR) {
            return Err(RecordError::UnsupportedVersion { found: view.schema_version.into_owned() });
        }
        Ok(view)
    }

    /// serde's reading alone (what [`parse`](Self::parse) falls back to), without the
    /// version check.
    pub(crate) fn parse_serde(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The model that served the request: the response's model, else the one asked for
    /// (as [`owned::AuditRecord::effective_model`]).
    pub fn effective_model(&self) -> Option<&str> {
        self.gen_ai.response.model.as_deref().or(self.gen_ai.request.model.as_deref())
    }

    /// The owned record (what [`owned::AuditRecord::from_json`] returns for the same bytes).
    pub fn into_record(self) -> owned::AuditRecord {
        owned::AuditRecord {
            schema_version: self.schema_version.into_owned(),
            record_id: self.record_id.into_owned(),
            chain_id: self.chain_id,
            seq: self.seq,
            started_at: self.started_at,
            first_byte_at: self.first_byte_at,
            finished_at: self.finished_at,
            http: self.http.into_owned(),
            caller: self.caller.into_owned(),
            trace: self.trace.into_owned(),
            gen_ai: self.gen_ai.into_owned(),
            provenance: self.provenance.into_owned(),
            output_sources: self.output_sources.into_iter().map(OutputSource::into_owned).collect(),
            watermarks: self.watermarks.into_iter().map(Watermark::into_owned).collect(),
            digital_source_type: own(self.digital_source_type),
            disclosure: self.disclosure.map(Disclosure::into_owned),
            safeguards: self.safeguards.into_iter().map(SafeguardDecision::into_owned).collect(),
            records_lost_before: self.records_lost_before,
            attributes: self.attributes.into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            extensions: self.extensions,
        }
    }
}

/// [`owned::BodySummary`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct BodySummary<'a> {
    #[serde(default, borrow)]
    pub content_type: Option<Text<'a>>,
    pub bytes: u64,
    #[serde(default, borrow)]
    pub blake3: Option<Text<'a>>,
    pub capture: CaptureMode,
    #[serde(default, borrow)]
    pub captured: Option<Text<'a>>,
    #[serde(default)]
    pub truncated: bool,
}

impl BodySummary<'_> {
    fn into_owned(self) -> owned::BodySummary {
        owned::BodySummary {
            content_type: own(self.content_type),
            bytes: self.bytes,
            blake3: own(self.blake3),
            capture: self.capture,
            captured: own(self.captured),
            truncated: self.truncated,
        }
    }
}

/// [`owned::HttpExchange`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct HttpExchange<'a> {
    #[serde(borrow)]
    pub method: Text<'a>,
    #[serde(borrow)]
    pub route: Text<'a>,
    #[serde(default)]
    pub status: Option<u16>,
    pub outcome: Outcome,
    #[serde(default, borrow)]
    pub error: Option<Text<'a>>,
    #[serde(default)]
    pub streaming: bool,
    #[serde(borrow)]
    pub request: BodySummary<'a>,
    #[serde(borrow)]
    pub response: BodySummary<'a>,
}

impl HttpExchange<'_> {
    fn into_owned(self) -> owned::HttpExchange {
        owned::HttpExchange {
            method: self.method.into_owned(),
            route: self.route.into_owned(),
            status: self.status,
            outcome: self.outcome,
            error: own(self.error),
            streaming: self.streaming,
            request: self.request.into_owned(),
            response: self.response.into_owned(),
        }
    }
}

/// [`owned::Caller`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct Caller<'a> {
    #[serde(default, borrow)]
    pub subject: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub tenant: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub client_addr: Option<Text<'a>>,
}

impl Caller<'_> {
    fn into_owned(self) -> owned::Caller {
        owned::Caller { subject: own(self.subject), tenant: own(self.tenant), client_addr: own(self.client_addr) }
    }
}

/// [`owned::TraceContext`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct TraceContext<'a> {
    #[serde(default, borrow)]
    pub trace_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub span_id: Option<Text<'a>>,
}

impl TraceContext<'_> {
    fn into_owned(self) -> owned::TraceContext {
        owned::TraceContext { trace_id: own(self.trace_id), span_id: own(self.span_id) }
    }
}

/// [`owned::GenAi`], borrowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct GenAi<'a> {
    #[serde(default, borrow)]
    pub operation: GenAiOperation<'a>,
    #[serde(default, borrow)]
    pub provider: GenAiProvider<'a>,
    #[serde(default, borrow)]
    pub request: GenAiRequest<'a>,
    #[serde(default, borrow)]
    pub response: GenAiResponse<'a>,
    #[serde(default)]
    pub usage: GenAiUsage,
}

impl GenAi<'_> {
    fn into_owned(self) -> owned::GenAi {
        owned::GenAi {
            operation: owned::GenAiOperation { name: own(self.operation.name) },
            provider: owned::GenAiProvider { name: own(self.provider.name) },
            request: self.request.into_owned(),
            response: self.response.into_owned(),
            usage: self.usage,
        }
    }
}

/// [`owned::GenAiOperation`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct GenAiOperation<'a> {
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
}

/// [`owned::GenAiProvider`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct GenAiProvider<'a> {
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
}

/// [`owned::GenAiRequest`], borrowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct GenAiRequest<'a> {
    #[serde(default, borrow)]
    pub model: Option<Text<'a>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default, borrow)]
    pub stop_sequences: Vec<Text<'a>>,
    #[serde(default)]
    pub choice_count: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default, borrow)]
    pub tools: Vec<Text<'a>>,
}

impl GenAiRequest<'_> {
    fn into_owned(self) -> owned::GenAiRequest {
        owned::GenAiRequest {
            model: own(self.model),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_tokens: self.max_tokens,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            stop_sequences: own_all(self.stop_sequences),
            choice_count: self.choice_count,
            stream: self.stream,
            tools: own_all(self.tools),
        }
    }
}

/// [`owned::GenAiResponse`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct GenAiResponse<'a> {
    #[serde(default, borrow)]
    pub id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub model: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub finish_reasons: Vec<Text<'a>>,
}

impl GenAiResponse<'_> {
    fn into_owned(self) -> owned::GenAiResponse {
        owned::GenAiResponse { id: own(self.id), model: own(self.model), finish_reasons: own_all(self.finish_reasons) }
    }
}

/// [`owned::Provenance`], borrowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct Provenance<'a> {
    #[serde(default, borrow)]
    pub model_version: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub model_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub deployment: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub system_prompt_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub output_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub tool_calls: Vec<ToolCall<'a>>,
    /// Free-form parameters (owned, like [`owned::Provenance::parameters`]).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

impl Provenance<'_> {
    fn into_owned(self) -> owned::Provenance {
        owned::Provenance {
            model_version: own(self.model_version),
            model_digest: own(self.model_digest),
            deployment: own(self.deployment),
            system_prompt_digest: own(self.system_prompt_digest),
            output_digest: own(self.output_digest),
            tool_calls: self.tool_calls.into_iter().map(ToolCall::into_owned).collect(),
            parameters: self.parameters,
        }
    }
}

/// [`owned::ToolCall`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct ToolCall<'a> {
    #[serde(default, borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub arguments_digest: Option<Text<'a>>,
}

impl ToolCall<'_> {
    fn into_owned(self) -> owned::ToolCall {
        owned::ToolCall { id: own(self.id), name: self.name.into_owned(), arguments_digest: own(self.arguments_digest) }
    }
}

/// [`owned::OutputSource`], borrowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct OutputSource<'a> {
    #[serde(borrow)]
    pub uri: Text<'a>,
    #[serde(default, borrow)]
    pub title: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub content_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub locator: Option<Text<'a>>,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default, borrow)]
    pub license: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub rights_holder: Option<Text<'a>>,
    #[serde(default)]
    pub retrieved_at: Option<Timestamp>,
}

impl OutputSource<'_> {
    fn into_owned(self) -> owned::OutputSource {
        owned::OutputSource {
            uri: self.uri.into_owned(),
            title: own(self.title),
            content_digest: own(self.content_digest),
            locator: own(self.locator),
            score: self.score,
            license: own(self.license),
            rights_holder: own(self.rights_holder),
            retrieved_at: self.retrieved_at,
        }
    }
}

/// [`owned::Watermark`], borrowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct Watermark<'a> {
    #[serde(borrow)]
    pub scheme: Text<'a>,
    #[serde(default, borrow)]
    pub key_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub payload_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub manifest_digest: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub applied_by: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub detector: Option<Text<'a>>,
    #[serde(default)]
    pub detector_score: Option<f64>,
}

impl Watermark<'_> {
    fn into_owned(self) -> owned::Watermark {
        owned::Watermark {
            scheme: self.scheme.into_owned(),
            key_id: own(self.key_id),
            payload_digest: own(self.payload_digest),
            manifest_digest: own(self.manifest_digest),
            applied_by: own(self.applied_by),
            detector: own(self.detector),
            detector_score: self.detector_score,
        }
    }
}

/// [`owned::Disclosure`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[allow(missing_docs)]
pub struct Disclosure<'a> {
    #[serde(borrow)]
    pub method: Text<'a>,
    #[serde(default, borrow)]
    pub text: Option<Text<'a>>,
}

impl Disclosure<'_> {
    fn into_owned(self) -> owned::Disclosure {
        owned::Disclosure { method: self.method.into_owned(), text: own(self.text) }
    }
}

/// [`owned::SafeguardDecision`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[allow(missing_docs)]
pub struct SafeguardDecision<'a> {
    #[serde(borrow)]
    pub policy_id: Text<'a>,
    #[serde(default, borrow)]
    pub policy_version: Option<Text<'a>>,
    pub action: SafeguardAction,
    #[serde(default, borrow)]
    pub stage: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub category: Option<Text<'a>>,
    #[serde(default)]
    pub score: Option<f64>,
}

impl SafeguardDecision<'_> {
    fn into_owned(self) -> owned::SafeguardDecision {
        owned::SafeguardDecision {
            policy_id: self.policy_id.into_owned(),
            policy_version: own(self.policy_version),
            action: self.action,
            stage: own(self.stage),
            category: own(self.category),
            score: self.score,
        }
    }
}
