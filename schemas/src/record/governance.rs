//! Output sources, watermarks and disclosure, safeguard decisions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// IPTC digital source type for content created by a trained model.
pub const IPTC_TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

/// A source an output was based on: a retrieved document, a cited web page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct OutputSource {
    /// Where the source lives (URL, document URI).
    pub uri: String,
    /// Human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Digest of the content that was used (`blake3:<hex>`, `sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<String>,
    /// Where in the source (page, chunk id, character range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// Retrieval score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Licence of the source (SPDX id or URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Who holds the rights to the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights_holder: Option<String>,
    /// When it was retrieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieved_at: Option<Timestamp>,
}

/// A watermark or content credential applied to (or detected in) the output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Watermark {
    /// `c2pa`, `synthid-text`, `metadata-header`, ...
    pub scheme: String,
    /// Key or certificate id used to mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Digest of the embedded payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    /// Digest of the C2PA manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// Component that applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    /// Detector used to check it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// Detector score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector_score: Option<f64>,
}

/// How the AI origin of the output was disclosed to people.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Disclosure {
    /// `ui-label`, `response-header`, `c2pa-manifest`, ...
    pub method: String,
    /// The text shown, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What a safeguard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SafeguardAction {
    /// The request or output was refused.
    Blocked,
    /// Part of the content was removed or rewritten.
    Filtered,
    /// The content passed but was marked for review.
    Flagged,
    /// Checked and allowed.
    Allowed,
}

impl SafeguardAction {
    /// The lowercase name used in records and columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Filtered => "filtered",
            Self::Flagged => "flagged",
            Self::Allowed => "allowed",
        }
    }
}

/// A decision of an API-based safeguard (moderation, PII filter, jailbreak detector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SafeguardDecision {
    /// Policy identifier.
    pub policy_id: String,
    /// Policy version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// What was done.
    pub action: SafeguardAction,
    /// `input` or `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Category (`self-harm`, `pii`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Score, if the safeguard gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}
