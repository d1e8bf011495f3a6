//! `kiroku report`: the explainability and business-continuity audit as one
//! self-contained HTML page (inline CSS and SVG, no scripts, no fetches), and the same
//! figures as JSON for machines.
//!
//! The archive is read with column projection and date-partition pruning, batch by
//! batch, into fixed-size aggregates: latency percentiles come from log-bucketed
//! histograms (1.5% resolution), so memory does not grow with the number of records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ListArray, RecordBatch, StringArray, StructArray};
use kiroku_schemas::Timestamp;
use kiroku_schemas::checkpoint::{Checkpoint, TrustedKeys};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use serde::Serialize;

use crate::archive::Archive;
use crate::error::CliError;

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub to: Option<Timestamp>,
    /// Only this model (served, else requested).
    pub model: Option<String>,
    /// Error rate above which a time bucket counts as an outage.
    pub outage_error_rate: f64,
    /// The log's key, to check checkpoint signatures.
    pub verifier: Option<TrustedKeys>,
}

const BUCKETS: usize = 60;
const HIST: usize = 1300;
const COLUMNS: [&str; 15] = [
    "chain_id",
    "seq",
    "started_at",
    "duration_ms",
    "model",
    "request_model",
    "response_model",
    "provider",
    "outcome",
    "streaming",
    "model_version",
    "model_digest",
    "output_sources",
    "watermarks",
    "safeguards",
];

/// A latency histogram with 1.5% wide log buckets from 0.01 ms up.
#[derive(Clone)]
struct Hist(Vec<u32>);

impl Default for Hist {
    fn default() -> Self {
        Self(vec![0; HIST])
    }
}

impl Hist {
    fn add(&mut self, ms: f64) {
        let i = if ms <= 0.01 { 0 } else { ((ms / 0.01).ln() / 1.015f64.ln()) as usize };
        self.0[i.min(HIST - 1)] += 1;
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.0.iter().map(|c| u64::from(*c)).sum();
        if n == 0 {
            return None;
        }
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.0.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= want {
                return Some(0.01 * 1.015f64.powi(i as i32 + 1));
            }
        }
        None
    }
}

#[derive(Default, Clone)]
struct Counts {
    requests: u64,
    errors: u64,
    aborted: u64,
    hist: Hist,
}

impl Counts {
    fn add(&mut self, outcome: &str, ms: f64) {
        self.requests += 1;
        self.errors += u64::from(outcome == "error");
        self.aborted += u64::from(outcome == "aborted");
        self.hist.add(ms);
    }
}

/// Per model (and provider): the figures business continuity asks for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelFigures {
    /// Model served (else requested).
    pub model: String,
    /// Provider.
    pub provider: String,
    /// Requests.
    pub requests: u64,
    /// Requests with outcome `error`.
    pub errors: u64,
    /// errors / requests.
    pub error_rate: f64,
    /// Streams the client abandoned.
    pub aborted: u64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 95th percentile (ms).
    pub p95_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// The same figures per time bucket (the buckets of [`Summary::timeline`]).
    pub timeline: Vec<ModelBucket>,
}

/// One model's figures in one time bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelBucket {
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Latency percentiles (ms), when there were requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// A period with an error rate above the threshold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outage {
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
    /// Requests in the window.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
}

/// When a model's version or digest changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionChange {
    /// Model.
    pub model: String,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Version (or `-`).
    pub version: String,
    /// Digest (or `-`).
    pub digest: String,
}

/// One time bucket of the charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Bucket start (RFC 3339).
    pub start: String,
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// p95 latency (ms), if any request.
    pub p95_ms: Option<f64>,
}

/// Integrity of one chain as the report found it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChainIntegrity {
    /// Chain.
    pub chain_id: String,
    /// Records in the archive.
    pub records: u64,
    /// Seqs missing between the first and the last (gaps).
    pub gaps: u64,
    /// Records lost by the journal (FailOpen), stated in the chain.
    pub records_lost: u64,
    /// Records lost after the chain's last record that no record states: its writer is
    /// gone, and the compactor noted them in the manifest from the chain's `lost` file.
    pub records_lost_unstated: u64,
    /// Size of the last checkpoint.
    pub last_checkpoint_size: u64,
    /// Time of the last checkpoint.
    pub last_checkpoint_time: Option<String>,
    /// `verified`, `unsigned (no key given)` or what failed.
    pub checkpoints: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// First and last request.
    pub period: (Option<String>, Option<String>),
    /// Records reported on.
    pub records: u64,
    /// Per model and provider.
    pub models: Vec<ModelFigures>,
    /// Outage windows.
    pub outages: Vec<Outage>,
    /// Aborted streams.
    pub aborted_streams: u64,
    /// Requests served by another model than asked for.
    pub fallbacks: u64,
    /// Model version changes over time.
    pub version_changes: Vec<VersionChange>,
    /// Requests per time bucket.
    pub timeline: Vec<Bucket>,
    /// Records with output sources.
    pub with_sources: u64,
    /// Top sources: uri, rights holder, licence, uses.
    pub top_sources: Vec<(String, String, String, u64)>,
    /// Records watermarked or with content credentials.
    pub watermarked: u64,
    /// Watermarks by scheme.
    pub watermark_schemes: BTreeMap<String, u64>,
    /// Safeguard decisions: (policy, action) -> count.
    pub safeguards: Vec<(String, String, u64)>,
    /// Errors and aborted requests, newest first (record ids), at most 20.
    pub incidents: Vec<(String, String, String)>,
    /// Per chain.
    pub integrity: Vec<ChainIntegrity>,
}

fn time_range(
    archive: &Archive,
    files: &[(String, crate::manifest::FileEntry)],
) -> Result<Option<(i64, i64)>, CliError> {
    let mut range: Option<(i64, i64)> = None;
    for (_, f) in files {
        let path = archive.root.join(&f.path);
        let file = std::fs::File::open(&path).map_err(|e| CliError::io(&path, e))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?;
        let Some(ci) = b.parquet_schema().columns().iter().position(|c| c.name() == "started_at") else { continue };
        for rg in b.metadata().row_groups() {
            if let Some(Statistics::Int64(s)) = rg.column(ci).statistics()
                && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
            {
                range = Some(range.map_or((*lo, *hi), |(a, z)| (a.min(*lo), z.max(*hi))));
            }
        }
    }
    Ok(range)
}

fn rfc(us: i64) -> String {
    Timestamp::from_unix_nanos(us.saturating_mul(1000)).to_string()
}

/// One text field of a list-of-structs column (`output_sources.uri`), read row by row
/// through the list's offsets: slicing the list per row would copy every child array's
/// handles, which had been most of the report's time.
struct ListField<'a> {
    list: Option<&'a ListArray>,
    field: Option<&'a StringArray>,
}

impl<'a> ListField<'a> {
    fn new(col: Option<&'a dyn Array>, field: &str) -> Self {
        let list = col.and_then(|c| c.as_list_opt::<i32>());
        let field = list
            .and_then(|l| l.values().as_any().downcast_ref::<StructArray>())
            .and_then(|st| st.column_by_name(field))
            .and_then(|c| c.as_string_opt::<i32>());
        Self { list, field }
    }

    /// The field's values in row `row`'s list, `-` for a missing one.
    fn values(&self, row: usize) -> Vec<&'a str> {
        let (Some(list), Some(f)) = (self.list, self.field) else { return Vec::new() };
        if list.is_null(row) {
            return Vec::new();
        }
        let offsets = list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        (start..end).map(|j| if f.is_null(j) { "-" } else { f.value(j) }).collect()
    }
}

/// Aggregate the archive.
pub fn summarize(archive: &Archive, opts: &ReportOptions) -> Result<Summary, CliError> {
    let files = archive.files(opts.from, opts.to);
    let range = time_range(archive, &files)?;
    let (t0, t1) = range.unwrap_or((0, 1));
    let lo = opts.from.map_or(t0, |f| f.unix_micros().max(t0));
    let hi = opts.to.map_or(t1, |t| t.unix_micros().min(t1)).max(lo);
    let width = ((hi - lo) / BUCKETS as i64 + 1).max(1);
    let mut buckets = vec![Counts::default(); BUCKETS];
    let mut models: BTreeMap<(String, String), (Counts, Vec<Counts>)> = BTreeMap::new();
    let mut versions: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut sources: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    let mut schemes: BTreeMap<String, u64> = BTreeMap::new();
    let mut safeguards: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut chains: BTreeMap<String, (u64, BTreeSet<u64>, u64)> = BTreeMap::new();
    let mut incidents: Vec<(i64, String, String, String)> = Vec::new();
    let (mut records, mut fallbacks, mut aborted_streams, mut with_sources, mut watermarked) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut period: (Option<i64>, Option<i64>) = (None, None);
    for (_, f) in &files {
        let path = archive.root.join(&f.path);
        let file = std::fs::File::open(&path).map_err(|e| CliError::io(&path, e))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?;
        let mut cols: Vec<&str> = COLUMNS.to_vec();
        cols.extend(["record_id", "records_lost_before", "error"]);
        let mask = ProjectionMask::columns(b.parquet_schema(), cols);
        let reader =
            b.with_projection(mask).build().map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?;
        for batch in reader {
            let batch: RecordBatch = batch.map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?;
            let s = |n: &str| batch.column_by_name(n).and_then(|c| c.as_string_opt::<i32>().cloned());
            let (model, req_model, resp_model, provider, outcome, version, digest, chain, rid, err) = (
                s("model"),
                s("request_model"),
                s("response_model"),
                s("provider"),
                s("outcome"),
                s("model_version"),
                s("model_digest"),
                s("chain_id"),
                s("record_id"),
                s("error"),
            );
            let started = batch
                .column_by_name("started_at")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned());
            let dur = batch.column_by_name("duration_ms").and_then(|c| c.as_primitive_opt::<Float64Type>().cloned());
            let seq = batch.column_by_name("seq").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
            let lost =
                batch.column_by_name("records_lost_before").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
            let list = |col: &str, field: &str| ListField::new(batch.column_by_name(col).map(|c| c.as_ref()), field);
            let (uri_col, holder_col, licence_col) = (
                list("output_sources", "uri"),
                list("output_sources", "rights_holder"),
                list("output_sources", "license"),
            );
            let scheme_col = list("watermarks", "scheme");
            let (policy_col, action_col) = (list("safeguards", "policy_id"), list("safeguards", "action"));
            let streaming = batch.column_by_name("streaming").and_then(|c| c.as_boolean_opt().cloned());
            let txt = |a: &Option<arrow_array::StringArray>, i: usize| {
                a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i).to_owned())
            };
            for i in 0..batch.num_rows() {
                let t = started.as_ref().map_or(0, |a| a.value(i));
                if opts.from.is_some_and(|f| t < f.unix_micros()) || opts.to.is_some_and(|to| t >= to.unix_micros()) {
                    continue;
                }
                let m = txt(&model, i).unwrap_or_else(|| "-".into());
                if opts.model.as_ref().is_some_and(|want| *want != m) {
                    continue;
                }
                records += 1;
                period = (Some(period.0.map_or(t, |p| p.min(t))), Some(period.1.map_or(t, |p| p.max(t))));
                let oc = txt(&outcome, i).unwrap_or_default();
                let ms = dur.as_ref().map_or(0.0, |d| d.value(i));
                let p = txt(&provider, i).unwrap_or_else(|| "-".into());
                let bi = (((t - lo).max(0) / width) as usize).min(BUCKETS - 1);
                let (all, per) = models
                    .entry((m.clone(), p))
                    .or_insert_with(|| (Counts::default(), vec![Counts::default(); BUCKETS]));
                all.add(&oc, ms);
                per[bi].add(&oc, ms);
                buckets[bi].add(&oc, ms);
                if oc == "aborted" && streaming.as_ref().is_some_and(|s| s.value(i)) {
                    aborted_streams += 1;
                }
                if let (Some(a), Some(b)) = (txt(&req_model, i), txt(&resp_model, i))
                    && a != b
                {
                    fallbacks += 1;
                }
                let key = (
                    m.clone(),
                    txt(&version, i).unwrap_or_else(|| "-".into()),
                    txt(&digest, i).unwrap_or_else(|| "-".into()),
                );
                if key.1 != "-" || key.2 != "-" {
                    let e = versions.entry(key).or_insert(t);
                    *e = (*e).min(t);
                }
                let uris = uri_col.values(i);
                with_sources += u64::from(!uris.is_empty());
                if !uris.is_empty() {
                    let (holders, licences) = (holder_col.values(i), licence_col.values(i));
                    for (k, u) in uris.into_iter().enumerate() {
                        if let Some(e) = sources.get_mut(u) {
                            e.2 += 1;
                        } else {
                            let field = |v: &[&str]| v.get(k).map_or_else(String::new, |s| (*s).to_owned());
                            sources.insert(u.to_owned(), (field(&holders), field(&licences), 1));
                        }
                    }
                }
                let sch = scheme_col.values(i);
                watermarked += u64::from(!sch.is_empty());
                for s in sch {
                    match schemes.get_mut(s) {
                        Some(n) => *n += 1,
                        None => {
                            schemes.insert(s.to_owned(), 1);
                        }
                    }
                }
                let pol = policy_col.values(i);
                if !pol.is_empty() {
                    let act = action_col.values(i);
                    for (k, pid) in pol.into_iter().enumerate() {
                        let key = (pid.to_owned(), act.get(k).map_or_else(String::new, |a| (*a).to_owned()));
                        *safeguards.entry(key).or_default() += 1;
                    }
                }
                let c = chains.entry(txt(&chain, i).unwrap_or_default()).or_default();
                c.0 += 1;
                c.1.insert(seq.as_ref().map_or(0, |s| s.value(i) as u64));
                if c.1.len() > 4096 {
                    // Keep the seq set small: only the span matters for gaps.
                    let (first, last) = (*c.1.first().unwrap_or(&0), *c.1.last().unwrap_or(&0));
                    c.1 = BTreeSet::from([first, last]);
                }
                c.2 += lost.as_ref().map_or(0, |l| l.value(i).max(0) as u64);
                if oc != "completed" {
                    incidents.push((t, txt(&rid, i).unwrap_or_default(), oc, txt(&err, i).unwrap_or_default()));
                    if incidents.len() >= 64 {
                        // Keep the newest 20: bounded memory however many failures there are.
                        incidents.sort_by_key(|x| std::cmp::Reverse(x.0));
                        incidents.truncate(20);
                    }
                }
            }
        }
    }
    incidents.sort_by_key(|x| std::cmp::Reverse(x.0));
    incidents.truncate(20);
    let mut outages = Vec::new();
    let mut open: Option<(usize, u64, u64)> = None;
    for (i, b) in buckets.iter().enumerate() {
        let bad = b.requests >= 3 && (b.errors as f64) / (b.requests as f64) > opts.outage_error_rate;
        match (bad, open) {
            (true, None) => open = Some((i, b.requests, b.errors)),
            (true, Some((s, r, e))) => open = Some((s, r + b.requests, e + b.errors)),
            (false, Some((s, r, e))) => {
                outages.push(Outage {
                    start: rfc(lo + s as i64 * width),
                    end: rfc(lo + i as i64 * width),
                    requests: r,
                    errors: e,
                });
                open = None;
            }
            (false, None) => {}
        }
    }
    if let Some((s, r, e)) = open {
        outages.push(Outage {
            start: rfc(lo + s as i64 * width),
            end: rfc(lo + BUCKETS as i64 * width),
            requests: r,
            errors: e,
        });
    }
    let mut top: Vec<(String, String, String, u64)> = sources.into_iter().map(|(u, (h, l, n))| (u, h, l, n)).collect();
    top.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
    top.truncate(10);
    let mut vc: Vec<VersionChange> = versions
        .into_iter()
        .map(|((model, version, digest), t)| VersionChange { model, first_seen: rfc(t), version, digest })
        .collect();
    vc.sort_by(|a, b| (a.model.as_str(), a.first_seen.as_str()).cmp(&(b.model.as_str(), b.first_seen.as_str())));
    let integrity = chains
        .into_iter()
        .map(|(chain, (n, seqs, lost))| {
            let span = match (seqs.first(), seqs.last()) {
                (Some(a), Some(z)) => z - a + 1,
                _ => 0,
            };
            let (mut size, mut time, mut status) = (
                0,
                None,
                if opts.verifier.is_some() {
                    "verified".to_owned()
                } else {
                    "signatures not checked (no --pubkey)".to_owned()
                },
            );
            for note in archive.manifest.chains.get(&chain).map(|e| e.checkpoints.as_slice()).unwrap_or_default() {
                let cp = match &opts.verifier {
                    Some(v) => v.open(note).map_err(|e| e.to_string()),
                    None => Checkpoint::parse_note_unverified(note).map_err(|e| e.to_string()),
                };
                match cp {
                    Ok(cp) if cp.size >= size => {
                        size = cp.size;
                        time = cp.time().map(|t| t.to_string());
                    }
                    Ok(_) => {}
                    Err(e) => status = format!("FAILED: {e}"),
                }
            }
            let unstated =
                archive.manifest.chains.get(&chain).and_then(|e| e.unstated.as_ref()).map_or(0, |u| u.records_lost);
            ChainIntegrity {
                chain_id: chain,
                records: n,
                gaps: if opts.from.is_none() && opts.to.is_none() && opts.model.is_none() {
                    span.saturating_sub(n)
                } else {
                    0
                },
                records_lost: lost,
                records_lost_unstated: unstated,
                last_checkpoint_size: size,
                last_checkpoint_time: time,
                checkpoints: status,
            }
        })
        .collect();
    Ok(Summary {
        period: (period.0.map(rfc), period.1.map(rfc)),
        records,
        models: models
            .into_iter()
            .map(|((model, provider), (c, per))| ModelFigures {
                model,
                provider,
                requests: c.requests,
                errors: c.errors,
                error_rate: if c.requests > 0 { c.errors as f64 / c.requests as f64 } else { 0.0 },
                aborted: c.aborted,
                p50_ms: c.hist.quantile(0.5).unwrap_or(0.0),
                p95_ms: c.hist.quantile(0.95).unwrap_or(0.0),
                p99_ms: c.hist.quantile(0.99).unwrap_or(0.0),
                timeline: per
                    .iter()
                    .map(|b| ModelBucket {
                        requests: b.requests,
                        errors: b.errors,
                        p50_ms: b.hist.quantile(0.5),
                        p95_ms: b.hist.quantile(0.95),
                        p99_ms: b.hist.quantile(0.99),
                    })
                    .collect(),
            })
            .collect(),
        outages,
        aborted_streams,
        fallbacks,
        version_changes: vc,
        timeline: buckets
            .iter()
            .enumerate()
            .map(|(i, b)| Bucket {
                start: rfc(lo + i as i64 * width),
                requests: b.requests,
                errors: b.errors,
                p95_ms: b.hist.quantile(0.95),
            })
            .collect(),
        with_sources,
        top_sources: top,
        watermarked,
        watermark_schemes: schemes,
        safeguards: safeguards.into_iter().map(|((p, a), n)| (p, a, n)).collect(),
        incidents: incidents.into_iter().map(|(_, id, oc, e)| (id, oc, e)).collect(),
        integrity,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(n: u64, d: u64) -> String {
    if d == 0 { "0.0%".into() } else { format!("{:.1}%", 100.0 * n as f64 / d as f64) }
}

/// SVG bars of requests per bucket, errors stacked in red.
fn timeline_svg(t: &[Bucket]) -> String {
    let max = t.iter().map(|b| b.requests).max().unwrap_or(1).max(1) as f64;
    let (w, h) = (720.0, 160.0);
    let bw = w / t.len().max(1) as f64;
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {}" role="img" aria-label="requests and errors over time">"#,
        h + 20.0
    );
    for (i, b) in t.iter().enumerate() {
        let rh = h * b.requests as f64 / max;
        let eh = h * b.errors as f64 / max;
        let x = i as f64 * bw;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{rh:.1}" fill="#4a7bd0"><title>{} requests, {} errors from {}</title></rect>"##,
            h - rh,
            bw * 0.9,
            b.requests,
            b.errors,
            esc(&b.start)
        );
        if eh > 0.0 {
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{eh:.1}" fill="#d0453a"/>"##,
                h - eh,
                bw * 0.9
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="0" y="{}" font-size="11">{}</text><text x="{w}" y="{}" font-size="11" text-anchor="end">{}</text></svg>"##,
        h + 15.0,
        esc(t.first().map_or("", |b| b.start.as_str())),
        h + 15.0,
        esc(t.last().map_or("", |b| b.start.as_str()))
    );
    s
}

/// A small chart of one model over time: requests (bars), errors (red), p95 (line).
fn sparkline(t: &[ModelBucket]) -> String {
    let (w, h) = (180.0, 28.0);
    let maxr = t.iter().map(|b| b.requests).max().unwrap_or(1).max(1) as f64;
    let maxl = t.iter().filter_map(|b| b.p95_ms).fold(0.0f64, f64::max).max(1e-9);
    let bw = w / t.len().max(1) as f64;
    let mut s = format!(
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="requests, errors and p95 latency over time">"#
    );
    let mut line = String::new();
    for (i, b) in t.iter().enumerate() {
        let x = i as f64 * bw;
        let rh = h * b.requests as f64 / maxr;
        let eh = h * b.errors as f64 / maxr;
        if b.requests > 0 {
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{rh:.1}" fill="#9db7e8"/>"##,
                h - rh,
                bw * 0.9
            );
        }
        if b.errors > 0 {
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{eh:.1}" fill="#d0453a"/>"##,
                h - eh,
                bw * 0.9
            );
        }
        if let Some(p) = b.p95_ms {
            let _ = write!(line, "{:.1},{:.1} ", x + bw / 2.0, h - h * p / maxl);
        }
    }
    if !line.is_empty() {
        let _ = write!(s, r##"<polyline points="{}" fill="none" stroke="#333" stroke-width="1"/>"##, line.trim());
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars for a labelled share.
fn bars_svg(items: &[(String, u64)], total: u64) -> String {
    let h = 22.0 * items.len().max(1) as f64;
    let mut s = format!(r#"<svg class="chart" viewBox="0 0 720 {h}" role="img">"#);
    for (i, (label, n)) in items.iter().enumerate() {
        let w = 460.0 * *n as f64 / total.max(1) as f64;
        let y = i as f64 * 22.0;
        let _ = write!(
            s,
            r##"<text x="0" y="{:.1}" font-size="12">{}</text><rect x="250" y="{:.1}" width="{w:.1}" height="16" fill="#5a9f6e"/><text x="{:.1}" y="{:.1}" font-size="12">{n}</text>"##,
            y + 13.0,
            esc(label),
            y + 2.0,
            255.0 + w,
            y + 13.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The HTML page.
pub fn html(s: &Summary, archive: &str) -> String {
    let mut h = String::new();
    let total = s.records;
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kiroku report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}} h1{{margin-bottom:0}} .sub{{color:#666}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}} th{{background:#f4f4f4}}
td.n{{text-align:right}} .ok{{color:#2a7a3a;font-weight:bold}} .bad{{color:#b3261e;font-weight:bold}} .chart{{width:100%;max-width:760px;height:auto}}
code{{background:#f4f4f4;padding:0 .2em}} section{{margin-bottom:2em}}
</style></head><body>"#
    );
    let _ = write!(
        h,
        r#"<h1>kiroku audit report</h1><p class="sub">Archive <code>{}</code>, records from {} to {}: <b id="total-records">{total}</b> records.</p>"#,
        esc(archive),
        esc(s.period.0.as_deref().unwrap_or("-")),
        esc(s.period.1.as_deref().unwrap_or("-"))
    );
    // Integrity first: what this page checked, and what it leaves to `kiroku verify`.
    let trusted = s.integrity.iter().all(|c| c.gaps == 0 && c.checkpoints == "verified");
    let _ = write!(
        h,
        r#"<section id="integrity"><h2>Integrity</h2><p>Checkpoints signed by the key, no seq missing: <span id="trusted" class="{}">{}</span></p><p>This page is computed from the archive's columns and does not re-check each record; <code>kiroku verify --archive</code> does (every payload against its hash, every column against its payload, every Merkle root against its signed checkpoint).</p><table><tr><th>chain</th><th>records</th><th>gaps</th><th>records lost (FailOpen)</th><th>last checkpoint</th><th>signed at</th><th>checkpoints</th></tr>"#,
        if trusted { "ok" } else { "bad" },
        if trusted { "yes" } else { "no: see below" }
    );
    for c in &s.integrity {
        let _ = write!(
            h,
            r#"<tr data-chain="{}"><td><code>{}</code></td><td class="n" data-k="records">{}</td><td class="n" data-k="gaps">{}</td><td class="n" data-k="lost">{}{}</td><td class="n">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&c.chain_id),
            esc(&c.chain_id),
            c.records,
            c.gaps,
            c.records_lost,
            if c.records_lost_unstated > 0 {
                format!(
                    r#" + <span data-k="lost-unstated">{}</span> after the last record, stated by no record (its writer is gone)"#,
                    c.records_lost_unstated
                )
            } else {
                String::new()
            },
            c.last_checkpoint_size,
            esc(c.last_checkpoint_time.as_deref().unwrap_or("-")),
            esc(&c.checkpoints)
        );
    }
    h.push_str("</table></section>");
    // Business continuity.
    let _ = write!(
        h,
        r#"<section id="continuity"><h2>Business continuity</h2>{}<table id="models"><tr><th>model</th><th>provider</th><th>requests</th><th>errors</th><th>error rate</th><th>aborted</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>over time (requests, errors, p95)</th></tr>"#,
        timeline_svg(&s.timeline)
    );
    for m in &s.models {
        let _ = write!(
            h,
            r#"<tr data-model="{}"><td>{}</td><td>{}</td><td class="n" data-k="requests">{}</td><td class="n" data-k="errors">{}</td><td class="n">{:.1}%</td><td class="n" data-k="aborted">{}</td><td class="n">{:.2}</td><td class="n">{:.2}</td><td class="n">{:.2}</td><td>{}</td></tr>"#,
            esc(&m.model),
            esc(&m.model),
            esc(&m.provider),
            m.requests,
            m.errors,
            100.0 * m.error_rate,
            m.aborted,
            m.p50_ms,
            m.p95_ms,
            m.p99_ms,
            sparkline(&m.timeline)
        );
    }
    let _ = write!(
        h,
        r#"</table><p>Aborted streams: <b id="aborted-streams">{}</b>. Fallbacks (served by another model than asked for): <b id="fallbacks">{}</b>.</p><h3>Outage windows</h3>"#,
        s.aborted_streams, s.fallbacks
    );
    if s.outages.is_empty() {
        h.push_str(r#"<p id="outages">None.</p>"#);
    } else {
        h.push_str(r#"<table id="outages"><tr><th>start</th><th>end</th><th>requests</th><th>failed</th></tr>"#);
        for o in &s.outages {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&o.start),
                esc(&o.end),
                o.requests,
                o.errors
            );
        }
        h.push_str("</table>");
    }
    h.push_str(r#"<h3>Model versions</h3><table id="versions"><tr><th>model</th><th>version</th><th>digest</th><th>first seen</th></tr>"#);
    for v in &s.version_changes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.model),
            esc(&v.version),
            esc(&v.digest),
            esc(&v.first_seen)
        );
    }
    h.push_str(r#"</table><h3>Incidents</h3><table id="incidents"><tr><th>record</th><th>outcome</th><th>what</th><th>open it</th></tr>"#);
    for (id, oc, e) in &s.incidents {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>kiroku explain {} --archive {}</code><br><code>kiroku evidence --archive {} --record-id {} --out DIR</code></td></tr>",
            esc(id),
            esc(oc),
            esc(e),
            esc(id),
            esc(archive),
            esc(archive),
            esc(id)
        );
    }
    h.push_str("</table></section>");
    // Explainability and provenance.
    let _ = write!(
        h,
        r#"<section id="explainability"><h2>Explainability and provenance</h2><p>Outputs with output sources: <b id="with-sources">{}</b> of {total} ({}). Watermarked or with content credentials: <b id="watermarked">{}</b> of {total} ({}).</p><h3>Top sources</h3><table id="sources"><tr><th>source</th><th>rights holder</th><th>licence</th><th>uses</th></tr>"#,
        s.with_sources,
        pct(s.with_sources, total),
        s.watermarked,
        pct(s.watermarked, total)
    );
    for (u, holder, lic, n) in &s.top_sources {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n" data-k="uses">{n}</td></tr>"#,
            esc(u),
            esc(holder),
            esc(lic)
        );
    }
    let schemes: Vec<(String, u64)> = s.watermark_schemes.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let _ = write!(
        h,
        r#"</table><h3>Watermarks by scheme</h3><div id="schemes">{}</div><h3>Safeguard decisions</h3><table id="safeguards"><tr><th>policy</th><th>action</th><th>decisions</th></tr>"#,
        bars_svg(&schemes, total)
    );
    for (p, a, n) in &s.safeguards {
        let _ = write!(h, r#"<tr><td>{}</td><td>{}</td><td class="n">{n}</td></tr>"#, esc(p), esc(a));
    }
    h.push_str("</table></section><p class=\"sub\">Generated by kiroku from the Parquet archive; figures are exact counts, latency percentiles are within 1.5%.</p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_within_resolution() {
        let mut h = Hist::default();
        for i in 1..=10_000 {
            h.add(f64::from(i) * 0.1); // 0.1 .. 1000 ms, uniform
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert!(Hist::default().quantile(0.5).is_none());
    }

    #[test]
    fn html_escapes_what_it_shows() {
        assert_eq!(esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
