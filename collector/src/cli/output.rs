//! Human-readable rendering of records.

use kiroku_schemas::AuditRecord;

use crate::archive::ChainCols;

/// One line per record for `find`.
pub(crate) fn line(c: &ChainCols, r: &AuditRecord) -> String {
    format!(
        "{}  {}  {} {}  {}  model={}  chain={} seq={}",
        r.record_id,
        r.started_at,
        r.http.method,
        r.http.route,
        r.http.outcome.as_str(),
        r.effective_model().unwrap_or("-"),
        c.chain_id,
        c.seq
    )
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// The `explain` page.
pub(crate) fn explain(c: &ChainCols, r: &AuditRecord, proof: &str) -> String {
    let mut s = String::new();
    let mut w = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    w(format!("record {}", r.record_id));
    w(format!("  when        {} -> {} (first byte {})", r.started_at, r.finished_at, opt(&r.first_byte_at)));
    w(format!(
        "  exchange    {} {} status {} outcome {}{}",
        r.http.method,
        r.http.route,
        opt(&r.http.status),
        r.http.outcome.as_str(),
        r.http.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    ));
    w(format!("  streaming   {}", r.http.streaming));
    w(format!("  caller      {} tenant {}", opt(&r.caller.subject), opt(&r.caller.tenant)));
    w(format!("  trace       {} span {}", opt(&r.trace.trace_id), opt(&r.trace.span_id)));
    let g = &r.gen_ai;
    w("provenance".into());
    w(format!("  provider    {} operation {}", opt(&g.provider.name), opt(&g.operation.name)));
    w(format!(
        "  model       asked {} served {} version {} digest {}",
        opt(&g.request.model),
        opt(&g.response.model),
        opt(&r.provenance.model_version),
        opt(&r.provenance.model_digest)
    ));
    w(format!("  deployment  {}", opt(&r.provenance.deployment)));
    w(format!(
        "  parameters  temperature {} top_p {} max_tokens {} seed {} stream {}",
        opt(&g.request.temperature),
        opt(&g.request.top_p),
        opt(&g.request.max_tokens),
        opt(&g.request.seed),
        opt(&g.request.stream)
    ));
    // Free-form parameters, and typed ones the request sent in a form their field cannot
    // hold (a seed above i64::MAX): as the JSON the request held.
    for (k, v) in &r.provenance.parameters {
        w(format!("  parameter   {k} {v}"));
    }
    w(format!(
        "  usage       input {} output {} cached {}",
        opt(&g.usage.input_tokens),
        opt(&g.usage.output_tokens),
        opt(&g.usage.cached_input_tokens)
    ));
    w(format!(
        "  finish      {}",
        if g.response.finish_reasons.is_empty() { "-".into() } else { g.response.finish_reasons.join(", ") }
    ));
    w(format!("  system prompt digest {}", opt(&r.provenance.system_prompt_digest)));
    w(format!("  output digest        {}", opt(&r.provenance.output_digest)));
    for t in &r.provenance.tool_calls {
        w(format!("  tool call   {} id {} args {}", t.name, opt(&t.id), opt(&t.arguments_digest)));
    }
    w(format!("output sources ({})", r.output_sources.len()));
    for src in &r.output_sources {
        w(format!(
            "  - {} \"{}\" rights holder {} licence {} score {} locator {}",
            src.uri,
            src.title.as_deref().unwrap_or(""),
            opt(&src.rights_holder),
            opt(&src.license),
            opt(&src.score),
            opt(&src.locator)
        ));
    }
    w(format!("watermarks and disclosure ({})", r.watermarks.len()));
    for m in &r.watermarks {
        w(format!(
            "  - {} key {} applied by {} payload {} detector {} score {}",
            m.scheme,
            opt(&m.key_id),
            opt(&m.applied_by),
            opt(&m.payload_digest),
            opt(&m.detector),
            opt(&m.detector_score)
        ));
    }
    w(format!("  digital source type {}", opt(&r.digital_source_type)));
    w(format!(
        "  disclosure  {}",
        r.disclosure.as_ref().map_or("-".into(), |d| format!("{} {}", d.method, d.text.as_deref().unwrap_or("")))
    ));
    w(format!("safeguards ({})", r.safeguards.len()));
    for d in &r.safeguards {
        w(format!(
            "  - {} v{} {:?} stage {} category {}",
            d.policy_id,
            opt(&d.policy_version),
            d.action,
            opt(&d.stage),
            opt(&d.category)
        ));
    }
    if !r.attributes.is_empty() {
        w("attributes".into());
        for (k, v) in &r.attributes {
            w(format!("  {k} = {v}"));
        }
    }
    w("integrity".into());
    w(format!("  chain {} seq {}", c.chain_id, c.seq));
    w(format!("  hash  {}", kiroku_schemas::digest::to_hex(&c.hash)));
    w(format!("  inclusion proof: {proof}"));
    if r.records_lost_before > 0 {
        w(format!("  WARNING: {} record(s) were lost by the journal just before this one", r.records_lost_before));
    }
    s
}
