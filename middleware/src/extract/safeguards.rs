//! Safeguard decisions the model provider states in its own bodies, for when the
//! application records none: a choice that ended with `finish_reason: "content_filter"`,
//! Azure OpenAI's `content_filter_results` (on the prompt and on each choice, whole or
//! streamed, and in the error that refuses a prompt), Anthropic's `stop_reason:
//! "refusal"`, and the verdict of a moderation endpoint (`/v1/moderations`: each flagged
//! category with its score, or `allowed`; the moderation model is the policy version).
//!
//! Each decision is recorded once (streams repeat the results in every chunk), and only
//! what the provider did or found: a category that was filtered is `filtered` (on the
//! output) or `blocked` (on the prompt), one only detected is `flagged`; a category that
//! passed is not listed.

use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::{SafeguardAction, SafeguardDecision};
use serde_json::Value;

/// The policy id of a provider's content filter.
pub(crate) const CONTENT_FILTER: &str = "provider.content_filter";
/// The policy id of a provider's refusal to answer.
pub(crate) const REFUSAL: &str = "provider.refusal";
/// The policy id of a moderation endpoint's verdict (`/v1/moderations`).
pub(crate) const MODERATION: &str = "provider.moderation";

/// How many decisions one response may add (a stream cannot make it hold more).
const MOST: usize = 64;

/// The provider's decisions found so far in one response.
#[derive(Debug, Default)]
pub(crate) struct ProviderSafeguards {
    found: Vec<SafeguardDecision>,
}

impl ProviderSafeguards {
    fn add(&mut self, policy: &str, action: SafeguardAction, stage: &str, category: Option<&str>) {
        self.push(SafeguardDecision {
            policy_id: policy.to_owned(),
            policy_version: None,
            action,
            stage: Some(stage.to_owned()),
            category: category.map(str::to_owned),
            score: None,
        });
    }

    fn push(&mut self, d: SafeguardDecision) {
        let same = |e: &SafeguardDecision| {
            e.policy_id == d.policy_id && e.action == d.action && e.stage == d.stage && e.category == d.category
        };
        if self.found.len() < MOST && !self.found.iter().any(same) {
            self.found.push(d);
        }
    }

    /// A moderation endpoint's `results`: each flagged category with its score, or
    /// `allowed` when nothing was flagged; `model` (the moderation model) is the policy
    /// version.
    pub(crate) fn moderation(&mut self, results: &[Value], model: Option<String>) {
        for r in results {
            let flagged: Vec<&String> = r
                .get("categories")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k)
                .collect();
            let decision = |action, category: Option<&String>| SafeguardDecision {
                policy_id: MODERATION.to_owned(),
                policy_version: model.clone(),
                action,
                stage: Some("input".to_owned()),
                category: category.cloned(),
                score: category.and_then(|c| r.get("category_scores")?.get(c.as_str())?.as_f64()),
            };
            if flagged.is_empty() && r.get("flagged").and_then(Value::as_bool) == Some(false) {
                self.push(decision(SafeguardAction::Allowed, None));
            }
            for c in flagged {
                self.push(decision(SafeguardAction::Flagged, Some(c)));
            }
        }
    }

    /// A choice's finish reason (OpenAI) or a message's stop reason (Anthropic).
    pub(crate) fn reason(&mut self, reason: &str) {
        match reason {
            "content_filter" => self.add(CONTENT_FILTER, SafeguardAction::Filtered, "output", None),
            "refusal" => self.add(REFUSAL, SafeguardAction::Blocked, "output", None),
            _ => {}
        }
    }

    /// Azure's `content_filter_results` on the prompt and on each choice of a response
    /// or stream chunk, and the `content_filter` error that refuses a prompt.
    pub(crate) fn azure(&mut self, body: &Value) {
        for p in body.get("prompt_filter_results").and_then(Value::as_array).into_iter().flatten() {
            if let Some(r) = p.get("content_filter_results") {
                self.results(r, "input");
            }
        }
        for c in body.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if let Some(r) = c.get("content_filter_results") {
                self.results(r, "output");
            }
        }
        if let Some(e) = body.get("error").filter(|e| e.get("code").and_then(Value::as_str) == Some("content_filter")) {
            if let Some(r) = e.pointer("/innererror/content_filter_result") {
                self.results(r, "input");
            }
            // Refused, whether or not it says for which category.
            if self.found.iter().all(|d| d.stage.as_deref() != Some("input")) {
                self.add(CONTENT_FILTER, SafeguardAction::Blocked, "input", None);
            }
        }
    }

    /// One `content_filter_results` object: category -> `{filtered, detected, ...}`.
    fn results(&mut self, r: &Value, stage: &str) {
        let Some(categories) = r.as_object() else { return };
        for (category, v) in categories {
            let yes = |k: &str| v.get(k).and_then(Value::as_bool) == Some(true);
            let action = match (yes("filtered"), yes("detected")) {
                (true, _) if stage == "input" => SafeguardAction::Blocked,
                (true, _) => SafeguardAction::Filtered,
                (false, true) => SafeguardAction::Flagged,
                (false, false) => continue,
            };
            self.add(CONTENT_FILTER, action, stage, Some(category));
        }
    }

    /// Into the record, unless the application recorded safeguards itself.
    pub(crate) fn fill(self, rec: &mut AuditRecord) {
        super::fill_vec(&mut rec.safeguards, self.found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtered_detected_and_passed_categories() {
        let body = serde_json::json!({
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                "hate": {"filtered": false, "severity": "safe"},
                "jailbreak": {"filtered": false, "detected": true}}}],
            "choices": [{"index": 0, "finish_reason": "content_filter", "content_filter_results": {
                "violence": {"filtered": true, "severity": "medium"},
                "protected_material_text": {"filtered": false, "detected": false}}}]});
        let mut s = ProviderSafeguards::default();
        s.azure(&body);
        s.azure(&body); // a stream repeats them
        s.reason("content_filter");
        let got: Vec<(SafeguardAction, Option<&str>, Option<&str>)> =
            s.found.iter().map(|d| (d.action, d.stage.as_deref(), d.category.as_deref())).collect();
        assert_eq!(
            got,
            [
                (SafeguardAction::Flagged, Some("input"), Some("jailbreak")),
                (SafeguardAction::Filtered, Some("output"), Some("violence")),
                (SafeguardAction::Filtered, Some("output"), None),
            ]
        );
    }

    #[test]
    fn a_moderation_verdict_names_the_flagged_categories_or_allows() {
        let results = serde_json::json!([
            {"flagged": true, "categories": {"harassment": true, "violence": false, "self-harm/intent": true},
             "category_scores": {"harassment": 0.91, "violence": 0.02, "self-harm/intent": 0.7}},
            {"flagged": false, "categories": {"harassment": false}, "category_scores": {"harassment": 0.01}}]);
        let mut s = ProviderSafeguards::default();
        s.moderation(results.as_array().unwrap(), Some("omni-moderation-2024-09-26".into()));
        let got: Vec<(SafeguardAction, Option<&str>, Option<f64>)> =
            s.found.iter().map(|d| (d.action, d.category.as_deref(), d.score)).collect();
        assert_eq!(
            got,
            [
                (SafeguardAction::Flagged, Some("harassment"), Some(0.91)),
                (SafeguardAction::Flagged, Some("self-harm/intent"), Some(0.7)),
                (SafeguardAction::Allowed, None, None),
            ]
        );
        assert!(s.found.iter().all(|d| d.policy_id == MODERATION
            && d.policy_version.as_deref() == Some("omni-moderation-2024-09-26")
            && d.stage.as_deref() == Some("input")));
    }

    #[test]
    fn a_refused_prompt_is_blocked_on_input() {
        let body = serde_json::json!({"error": {"code": "content_filter", "message": "filtered",
            "innererror": {"code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"self_harm": {"filtered": true, "severity": "high"}}}}});
        let mut s = ProviderSafeguards::default();
        s.azure(&body);
        assert_eq!(s.found.len(), 1);
        assert_eq!((s.found[0].action, s.found[0].category.as_deref()), (SafeguardAction::Blocked, Some("self_harm")));
        let mut bare = ProviderSafeguards::default();
        bare.azure(&serde_json::json!({"error": {"code": "content_filter", "message": "filtered"}}));
        assert_eq!((bare.found.len(), bare.found[0].action), (1, SafeguardAction::Blocked));
    }
}
