//! Annotations from the application: what only the service knows (which documents a
//! RAG answer used, which watermark it applied, what a safeguard decided).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::{Disclosure, GenAi, OutputSource, Provenance, SafeguardDecision, Watermark};

/// What an application adds to a record. Put one in the response extensions, or use
/// the [`AuditHandle`] from the request extensions (also while a stream is running).
/// Fields set here win over what extractors read from the bodies; lists are appended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// OpenTelemetry GenAI fields (provider, models, parameters, usage, ...).
    pub gen_ai: GenAi,
    /// Model version and digest, deployment, system prompt digest, tool calls, ...
    pub provenance: Provenance,
    /// Sources the output was based on.
    pub output_sources: Vec<OutputSource>,
    /// Watermarks and content credentials.
    pub watermarks: Vec<Watermark>,
    /// IPTC digital source type.
    pub digital_source_type: Option<String>,
    /// How AI origin was disclosed.
    pub disclosure: Option<Disclosure>,
    /// Safeguard decisions.
    pub safeguards: Vec<SafeguardDecision>,
    /// Free attributes.
    pub attributes: BTreeMap<String, String>,
    /// What went wrong, when the service knows better than the status code (a proxy's
    /// "upstream connection refused"); becomes the record's `http.error`.
    pub error: Option<String>,
}

macro_rules! overlay {
    ($dst:expr, $src:expr; $($f:ident),* $(,)?) => { $( if $src.$f.is_some() { $dst.$f = $src.$f.take(); } )* };
}

macro_rules! overlay_vec {
    ($dst:expr, $src:expr; $($f:ident),* $(,)?) => { $( if !$src.$f.is_empty() { $dst.$f = std::mem::take(&mut $src.$f); } )* };
}

impl Annotations {
    /// Write these annotations into `rec`: set fields replace, lists append.
    pub fn apply_to(mut self, rec: &mut AuditRecord) {
        let (g, s) = (&mut rec.gen_ai, &mut self.gen_ai);
        overlay!(g.operation, s.operation; name);
        overlay!(g.provider, s.provider; name);
        overlay!(g.request, s.request; model, temperature, top_p, top_k, max_tokens, seed, frequency_penalty, presence_penalty, choice_count, stream);
        overlay_vec!(g.request, s.request; stop_sequences, tools);
        overlay!(g.response, s.response; id, model);
        overlay_vec!(g.response, s.response; finish_reasons);
        overlay!(g.usage, s.usage; input_tokens, output_tokens, cached_input_tokens);
        let (p, s) = (&mut rec.provenance, &mut self.provenance);
        overlay!(p, s; model_version, model_digest, deployment, system_prompt_digest, output_digest);
        p.tool_calls.append(&mut s.tool_calls);
        p.parameters.append(&mut s.parameters);
        rec.output_sources.append(&mut self.output_sources);
        rec.watermarks.append(&mut self.watermarks);
        rec.safeguards.append(&mut self.safeguards);
        rec.attributes.append(&mut self.attributes);
        if self.digital_source_type.is_some() {
            rec.digital_source_type = self.digital_source_type;
        }
        if self.disclosure.is_some() {
            rec.disclosure = self.disclosure;
        }
        if self.error.is_some() {
            rec.http.error = self.error;
        }
    }
}

/// Handle to the record of the current request, found in the request extensions.
/// Cloneable and `Send`: move it into a streaming task to annotate while tokens flow.
///
/// ```
/// use kiroku::AuditHandle;
/// use kiroku_schemas::record::{OutputSource, Watermark};
///
/// fn annotate(handle: &AuditHandle) {
///     handle.add_source(OutputSource { uri: "https://docs.example/policy.pdf".into(), rights_holder: Some("Example KK".into()), ..Default::default() });
///     handle.add_watermark(Watermark { scheme: "metadata-header".into(), key_id: Some("wm-2026".into()), ..Default::default() });
///     handle.update(|a| a.provenance.model_version = Some("2026-10-01".into()));
/// }
/// ```
///
/// Annotations reach the record until it is finalised (the response's end, an error,
/// or the client going away). One made later is not in the record: it is logged as lost
/// (`kiroku::layer`, warning), and [`is_recorded`](Self::is_recorded) says beforehand
/// whether there is still time.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    record_id: Arc<str>,
    inner: Arc<Mutex<Slot>>,
}

/// The annotations so far, and whether the record has taken them.
#[derive(Debug, Default)]
struct Slot {
    annotations: Annotations,
    recorded: bool,
}

impl AuditHandle {
    pub(crate) fn new(record_id: &str) -> Self {
        Self { record_id: record_id.into(), inner: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while annotating leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Apply `f` to the annotations, or log it as lost once the record is final.
    fn annotate(&self, what: &str, f: impl FnOnce(&mut Annotations)) {
        let mut slot = self.lock();
        if slot.recorded {
            drop(slot);
            tracing::warn!(target: "kiroku::layer", record_id = %self.record_id,
                "annotation ({what}) made after the record was finalised: not recorded");
            return;
        }
        f(&mut slot.annotations);
    }

    /// The id the record will have (UUIDv7), e.g. to return it to the client.
    pub fn record_id(&self) -> &str {
        &self.record_id
    }

    /// True once the record has been finalised: annotations made from then on are not
    /// in it.
    pub fn is_recorded(&self) -> bool {
        self.lock().recorded
    }

    /// Change the annotations.
    pub fn update(&self, f: impl FnOnce(&mut Annotations)) {
        self.annotate("update", f);
    }

    /// Add a source the output is based on.
    pub fn add_source(&self, s: OutputSource) {
        self.annotate("source", |a| a.output_sources.push(s));
    }

    /// Add a watermark or content credential.
    pub fn add_watermark(&self, w: Watermark) {
        self.annotate("watermark", |a| a.watermarks.push(w));
    }

    /// Add a safeguard decision.
    pub fn add_safeguard(&self, d: SafeguardDecision) {
        self.annotate("safeguard", |a| a.safeguards.push(d));
    }

    /// Set a free attribute.
    pub fn set_attribute(&self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        self.annotate("attribute", |a| {
            a.attributes.insert(key, value);
        });
    }

    /// The annotations, for the record being finalised; later ones are refused.
    pub(crate) fn take(&self) -> Annotations {
        let mut slot = self.lock();
        slot.recorded = true;
        std::mem::take(&mut slot.annotations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_after_the_record_is_final_are_refused_not_kept_for_nobody() {
        let h = AuditHandle::new("r1");
        let copy = h.clone();
        copy.set_attribute("k", "v");
        assert!(!h.is_recorded());
        let taken = h.take();
        assert_eq!(taken.attributes.get("k").map(String::as_str), Some("v"));
        assert!(copy.is_recorded(), "every clone sees it");
        copy.add_source(OutputSource { uri: "late".into(), ..Default::default() });
        copy.update(|a| a.error = Some("late".into()));
        assert_eq!(h.take(), Annotations::default(), "nothing gathers after the end");
    }
}
