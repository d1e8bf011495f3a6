//! Helpers for kiroku's end-to-end tests: read a spool back and verify it the way the
//! collector will, start an audited sample server on loopback, talk HTTP/1.1 to it.

pub mod process;

use std::collections::BTreeMap;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use kiroku_schemas::checkpoint::{NoteVerifier, TrustedKeys};
use kiroku_schemas::segment::{ChainState, SegmentReader, VerifyOptions, verify_segment};
use kiroku_schemas::{AuditRecord, ChainId};

/// One record read back from a spool, with its chain position.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Chain.
    pub chain_id: ChainId,
    /// Seq from the frame.
    pub seq: u64,
    /// The exact payload bytes.
    pub payload: Vec<u8>,
    /// The parsed record.
    pub record: AuditRecord,
}

/// Write into `chain_dir` an open segment of two records that starts where the chain's
/// head says the chain stands but links to a record the chain does not have (another
/// chain's segment, a stale copy). Returns the seq it starts at.
pub fn write_discontinuous_open_segment(chain_dir: &Path, chain: ChainId) -> u64 {
    let head = fs::read(chain_dir.join("head")).expect("the chain's head");
    let at = ChainState::from_header(SegmentReader::open(&head[..]).expect("a head").header());
    let first = at.next_seq;
    let elsewhere = ChainState { last_hash: [7; 32], ..at };
    let mut w = kiroku_schemas::segment::SegmentWriter::new(Vec::new(), elsewhere.next_header()).expect("header");
    for seq in first..first + 2 {
        let mut r = AuditRecord::new(format!("foreign-{seq}"), kiroku_schemas::Timestamp::now());
        (r.chain_id, r.seq) = (chain, seq);
        w.append_record(&r.to_json()).expect("record");
    }
    fs::write(chain_dir.join(format!("{first:020}.open")), w.into_inner()).expect("write the segment");
    first
}

/// Segment files of a chain directory in seq order: sealed ones, then the open one.
pub fn segment_files(chain_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        fs::read_dir(chain_dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "seg" || x == "open"));
    files.sort();
    files
}

/// Verify every chain under `spool` segment by segment with continuity (sealed
/// segments must be sealed and signed by `verifier`, one key or any of a set; an open
/// one may be unsealed), and return all records by chain. Panics with the verifier's
/// message on any problem.
pub fn read_spool(spool: &Path, verifier: &(impl Into<TrustedKeys> + Clone)) -> BTreeMap<ChainId, Vec<Stored>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(spool).expect("spool exists") {
        let dir = entry.expect("dir entry").path();
        let Some(chain_id) = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<ChainId>().ok()) else {
            continue;
        };
        let mut state = ChainState::genesis(chain_id);
        let mut records = Vec::new();
        for file in segment_files(&dir) {
            let sealed = file.extension().is_some_and(|x| x == "seg");
            let base = if sealed { VerifyOptions::sealed() } else { VerifyOptions::open() };
            let opts = base.with_verifier(verifier.clone()).continuing(state.clone());
            let f = fs::File::open(&file).expect("open segment");
            let report = verify_segment(BufReader::new(f), &opts).unwrap_or_else(|e| panic!("{}", e.in_file(&file)));
            let bytes = fs::read(&file).expect("read segment");
            let reader = SegmentReader::open(&bytes[..]).expect("header");
            for frame in reader {
                let Ok(frame) = frame else { break };
                if frame.kind != kiroku_schemas::segment::FrameKind::Record {
                    continue;
                }
                let record = AuditRecord::from_json(&frame.payload).expect("record JSON");
                assert_eq!(record.seq, frame.seq, "record seq agrees with its frame");
                assert_eq!(record.chain_id, chain_id, "record chain agrees with its directory");
                records.push(Stored { chain_id, seq: frame.seq, payload: frame.payload, record });
            }
            state = report.end;
        }
        out.insert(chain_id, records);
    }
    out
}

/// Every record of every chain, in chain then seq order.
pub fn all_records(spool: &Path, verifier: &(impl Into<TrustedKeys> + Clone)) -> Vec<Stored> {
    read_spool(spool, verifier).into_values().flatten().collect()
}

/// `to` made a copy of the directory tree `from` (a crash image of a running spool, a
/// scratch archive to damage).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy's directory");
    for e in fs::read_dir(from).expect("read the directory to copy").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).expect("copy a file");
        }
    }
}

pub use kiroku_examples::client::{Conn, Received};

use kiroku::{AuditLayer, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use std::time::Duration;

/// The sample model behind the audit layer, served on loopback, with its journal in a
/// temporary directory.
pub struct AuditedServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its journal.
    pub journal: Journal,
    /// The checkpoint key's verifier.
    pub verifier: NoteVerifier,
    /// The checkpoint signing key.
    pub signer: NoteSigner,
    /// The directory holding `spool/`.
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl AuditedServer {
    /// Start with journal and layer settings.
    pub async fn start(
        cfg: impl FnOnce(JournalConfig) -> JournalConfig,
        layer: impl FnOnce(AuditLayer) -> AuditLayer,
    ) -> Self {
        Self::start_with(cfg, layer, kiroku_examples::sample::router()).await
    }

    /// Start serving `app` (the sample router, possibly wrapped) behind the layer.
    pub async fn start_with(
        cfg: impl FnOnce(JournalConfig) -> JournalConfig,
        layer: impl FnOnce(AuditLayer) -> AuditLayer,
        app: axum::Router,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = NoteSigner::generate("kiroku-e2e").unwrap();
        let verifier = signer.verifier();
        let journal = Journal::open(cfg(JournalConfig::new(dir.path().join("spool"), signer.clone()))).unwrap();
        let app = app.layer(layer(AuditLayer::new(journal.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            kiroku_examples::sample::serve(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self { addr, journal, verifier, signer, dir, stop: Some(stop), task }
    }

    /// Stop serving, seal the journal, read every record back (verified).
    pub async fn finish(mut self) -> (Vec<Stored>, tempfile::TempDir) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.journal.shutdown().await.unwrap();
        let records = all_records(&self.dir.path().join("spool"), &self.verifier);
        (records, self.dir)
    }
}

/// A chat completion request for the sample model.
pub fn chat(prompt: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": kiroku_examples::sample::DEFAULT_MODEL,
        "messages": [{"role": "system", "content": "You are a test."}, {"role": "user", "content": prompt}],
        "temperature": 0.2,
        "stream": stream,
        "stream_options": {"include_usage": stream},
    })
}
