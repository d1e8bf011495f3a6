//! The HTTP exchange, the caller and the trace context.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The response was delivered to its end.
    #[default]
    Completed,
    /// The service or the upstream failed (an error status or a body error).
    Error,
    /// The client went away or the stream was dropped before its end.
    Aborted,
}

impl Outcome {
    /// The lowercase name used in records and columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Error => "error",
            Self::Aborted => "aborted",
        }
    }
}

/// How much of a body is kept in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Nothing but byte count.
    None,
    /// Byte count and blake3 digest.
    Digest,
    /// Digest plus the body with personal data and secrets redacted (the default).
    #[default]
    Redacted,
    /// Digest plus the body as it was (up to the capture cap).
    Full,
}

impl CaptureMode {
    /// The lowercase name used in records, columns and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Digest => "digest",
            Self::Redacted => "redacted",
            Self::Full => "full",
        }
    }
}

/// What was seen of one body (request or response).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BodySummary {
    /// The `Content-Type` header, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Bytes that passed through (all of them, not only the captured part).
    pub bytes: u64,
    /// blake3 of every byte that passed through, lowercase hex (absent in mode `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The capture mode applied.
    pub capture: CaptureMode,
    /// The captured body after redaction, up to the capture cap (UTF-8; invalid
    /// sequences replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<String>,
    /// True when the body was longer than the capture cap and `captured` is a prefix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The HTTP side of an inference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HttpExchange {
    /// Request method.
    pub method: String,
    /// Request path without the query string (`/v1/chat/completions`).
    pub route: String,
    /// Response status; absent when no response head was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How the exchange ended.
    pub outcome: Outcome,
    /// What went wrong: for outcomes `error` and `aborted`, and for any exchange whose
    /// request body failed (`request body error: ...`, e.g. a client that left
    /// mid-upload, with the status the service answered). An error the API sent inside
    /// a stream that began with 200 (`the stream carried an error: ...`) makes the
    /// outcome `error` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the response was streamed (server-sent events).
    #[serde(default)]
    pub streaming: bool,
    /// The request body.
    pub request: BodySummary,
    /// The response body.
    pub response: BodySummary,
}

/// Who called: never a credential, only its keyed digest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Caller {
    /// Caller identity (a header value, an mTLS subject, or `key:<keyed blake3>` of an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Tenant or organisation, when the deployment has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Client address as `ip:<keyed blake3>`, or absent when the policy drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
}

impl Caller {
    /// True when nothing is known about the caller.
    pub fn is_empty(&self) -> bool {
        self.subject.is_none() && self.tenant.is_none() && self.client_addr.is_none()
    }
}

/// W3C trace context (`traceparent`) of the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// 16 lowercase hex digits: the span of this inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl TraceContext {
    /// True when the request carried no trace context.
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none() && self.span_id.is_none()
    }
}
