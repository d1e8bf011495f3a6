//! Provenance: OpenTelemetry GenAI attributes and kiroku's additions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `gen_ai.*`: the OpenTelemetry GenAI semantic-convention attributes of the inference.
/// Each field's JSON path is its attribute name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAi {
    /// `gen_ai.operation.name`.
    #[serde(default, skip_serializing_if = "GenAiOperation::is_empty")]
    pub operation: GenAiOperation,
    /// `gen_ai.provider.name`.
    #[serde(default, skip_serializing_if = "GenAiProvider::is_empty")]
    pub provider: GenAiProvider,
    /// `gen_ai.request.*`.
    #[serde(default)]
    pub request: GenAiRequest,
    /// `gen_ai.response.*`.
    #[serde(default)]
    pub response: GenAiResponse,
    /// `gen_ai.usage.*`.
    #[serde(default)]
    pub usage: GenAiUsage,
}

/// `gen_ai.operation`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAiOperation {
    /// `gen_ai.operation.name`: `chat`, `text_completion`, `embeddings`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl GenAiOperation {
    fn is_empty(&self) -> bool {
        self.name.is_none()
    }
}

/// `gen_ai.provider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAiProvider {
    /// `gen_ai.provider.name`: `openai`, `anthropic`, `aws.bedrock`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl GenAiProvider {
    fn is_empty(&self) -> bool {
        self.name.is_none()
    }
}

/// `gen_ai.request.*`: what was asked for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAiRequest {
    /// `gen_ai.request.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `gen_ai.request.temperature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `gen_ai.request.top_p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// `gen_ai.request.top_k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<f64>,
    /// `gen_ai.request.max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// `gen_ai.request.seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// `gen_ai.request.frequency_penalty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// `gen_ai.request.presence_penalty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// `gen_ai.request.stop_sequences`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// `gen_ai.request.choice.count`, written flat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u64>,
    /// kiroku: the client asked for a streamed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// kiroku: names of the tools offered to the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// `gen_ai.response.*`: what answered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAiResponse {
    /// `gen_ai.response.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `gen_ai.response.model`: the model that actually served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `gen_ai.response.finish_reasons`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_reasons: Vec<String>,
}

/// `gen_ai.usage.*`: tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenAiUsage {
    /// `gen_ai.usage.input_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// `gen_ai.usage.output_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// `gen_ai.usage.cache_read.input_tokens`, written flat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
}

/// Provenance that the semantic conventions do not name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// Model version as the provider states it (`2024-08-06`, a git tag, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Digest of the model weights or image (`sha256:...`), for self-hosted models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// Deployment or endpoint name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// blake3 (hex) of the system prompt, so prompt changes are traceable without
    /// storing the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt_digest: Option<String>,
    /// blake3 (hex) of the output text (the concatenated generated text, streamed or
    /// not): the key for "which inference produced this text?".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_digest: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Other request parameters worth keeping (`response_format`, `reasoning_effort`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// One tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// Provider's call id (`gen_ai.tool.call.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name (`gen_ai.tool.name`).
    pub name: String,
    /// blake3 (hex) of the arguments text: as the model sent it where the API carries
    /// arguments as a string (OpenAI); as compact JSON with every object's keys sorted
    /// where it carries a JSON object (Anthropic's `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_digest: Option<String>,
}
