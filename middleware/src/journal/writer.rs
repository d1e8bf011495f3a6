//! The writer thread: batches, seqs, frames, fsync, checkpoints, rotation, sealing.
//!
//! Shaped like tracing-appender's worker: block for the first message, drain what else
//! is queued without blocking, write the batch, make it durable once (group commit),
//! then answer everyone in the batch.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiroku_schemas::segment::{ChainState, SegmentWriter};
use kiroku_schemas::{AuditRecord, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::encoded::Encoded;
use super::faults::{Faults, Op, SegmentFile};
use super::lost::{self, UnstatedLosses};
use super::spool::{self, OpenedChain};
use super::writeback::Writeback;
use super::{Durability, Finisher, JournalConfig, JournalError, Msg, PendingRecord, Shared, ShutdownReport, Written};

const MAX_BATCH: usize = 4096;
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, the losses no record states yet are made durable (fsync) in the
/// chain's `lost` file while the journal runs.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, a newer count is written to the file in between, without fsync:
/// what a killed process leaves in the OS's cache is on the disk for the next process
/// (only a power loss takes it, and then it is at most KEEP_EVERY old).
const KEEP_QUICK: Duration = Duration::from_millis(10);

/// A record as the writer receives it.
enum Incoming {
    /// From the layer: finished and serialised here.
    Pending(Box<PendingRecord>),
    /// From `Journal::append`: serialised by the caller; only its seq goes in here.
    Encoded(Encoded),
}

struct OpenSegment {
    w: SegmentWriter<BufWriter<SegmentFile>>,
    path: PathBuf,
    opened: Instant,
    writeback: Writeback,
}

struct Writer {
    cfg: JournalConfig,
    chain: OpenedChain,
    shared: Arc<Shared>,
    seg: Option<OpenSegment>,
    dirty: bool,
    last_sync: Instant,
    last_checkpoint: Instant,
    records_since_checkpoint: u64,
    failed_at: Option<Instant>,
    /// Seq after the last record known to be durable (fsynced, sealed, or found on disk
    /// by recovery). Records from here to the chain's next seq are lost if the journal
    /// stops failed.
    durable_next: u64,
    /// Records from `durable_next` on that state earlier losses: (seq, records_lost_before).
    /// A record lost to a failure takes its statement with it, so its count goes back
    /// to the next record written. Empty unless losses happened.
    stating: Vec<(u64, u64)>,
    /// What the chain's `lost` file holds (as taken back from an earlier process, or as
    /// this writer last kept it); `None` when there is none. It is removed once the
    /// record at its `next` seq, which states what it holds, is durable.
    kept: Option<UnstatedLosses>,
    /// When the file was last made durable, and last written (with or without fsync).
    kept_at: Option<Instant>,
    written_at: Option<Instant>,
    /// Whether what the file holds was made durable.
    kept_durable: bool,
    /// The file is to be written again: a newer count waits for KEEP_QUICK (`newer`),
    /// or what it holds for KEEP_EVERY, to be made durable.
    keep_due: bool,
    newer: bool,
    /// The chain cannot continue (recovery found its open segment or head corrupt): failed for
    /// good, no more recovery attempts.
    abandoned: bool,
    /// Reused for every record's JSON (no allocation per record).
    json: Vec<u8>,
    /// Buffers of this batch's encoded records, to hand back to `append`'s callers.
    spent: Vec<Vec<u8>>,
}

pub(super) fn run(cfg: JournalConfig, chain: OpenedChain, mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            shared.healthy.store(false, Ordering::Release);
            tracing::error!(target: "kiroku::journal", "cannot start the journal writer: {e}");
            return;
        }
    };
    let now = Instant::now();
    let durable_next = chain.state.next_seq;
    let kept = (chain.owed_losses > 0).then(|| UnstatedLosses {
        lost: chain.owed_losses,
        durable: durable_next,
        next: durable_next,
        stating: Vec::new(),
    });
    let mut w = Writer {
        cfg,
        chain,
        shared,
        seg: None,
        dirty: false,
        last_sync: now,
        last_checkpoint: now,
        records_since_checkpoint: 0,
        failed_at: None,
        durable_next,
        stating: Vec::new(),
        kept,
        kept_at: None,
        written_at: None,
        kept_durable: true,
        keep_due: false,
        newer: false,
        abandoned: false,
        json: Vec::with_capacity(8192),
        spent: Vec::new(),
    };
    rt.block_on(async move {
        let mut batch = Vec::with_capacity(64);
        loop {
            let msg = match w.next_deadline() {
                Some(at) => tokio::select! {
                    m = rx.recv() => m,
                    () = tokio::time::sleep_until(at.into()) => { w.on_timer(); continue; }
                },
                None => rx.recv().await,
            };
            let Some(first) = msg else {
                // Every handle was dropped without shutdown: still seal what we have.
                let _ = w.finish();
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if w.process(&mut batch) {
                // Shut down: anything still queued was submitted too late.
                rx.close();
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Record(_, ack) | Msg::Encoded(_, ack) = m {
                        w.lost(1, "submitted after shutdown");
                        if let Some(a) = ack {
                            let _ = a.send(Err(JournalError::Closed));
                        }
                    }
                }
                return;
            }
        }
    });
}

impl Writer {
    fn state(&self) -> &ChainState {
        self.seg.as_ref().map_or(&self.chain.state, |s| s.w.state())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut at = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        if self.keep_due {
            match (self.newer, self.written_at, self.kept_at) {
                (true, Some(w), _) => at(w + KEEP_QUICK),
                (false, _, Some(k)) => at(k + KEEP_EVERY),
                _ => at(Instant::now()),
            }
        }
        if let Some(f) = self.failed_at {
            if !self.abandoned {
                at(f + RETRY_EVERY);
            }
            return d;
        }
        if let (Durability::Batched(iv), true) = (self.cfg.durability, self.dirty) {
            at(self.last_sync + iv);
        }
        if self.records_since_checkpoint > 0 {
            at(self.last_checkpoint + self.cfg.checkpoint_interval);
        }
        if let Some(s) = &self.seg {
            at(s.opened + self.cfg.segment_max_age);
        }
        d
    }

    fn on_timer(&mut self) {
        self.keep_unstated(false);
        if self.failed_at.is_some() {
            self.try_recover();
            return;
        }
        if let Err(e) = self.maintain() {
            self.fail(e);
        }
    }

    /// Write a batch; returns true when it held a shutdown request.
    fn process(&mut self, batch: &mut Vec<Msg>) -> bool {
        let mut acks: Vec<(oneshot::Sender<Result<Written, JournalError>>, u64)> = Vec::new();
        let mut flushes = Vec::new();
        let mut shutdown = None;
        let mut seal_failed: Option<JournalError> = None;
        for msg in batch.drain(..) {
            let (rec, ack) = match msg {
                Msg::Record(p, ack) => (Incoming::Pending(p), ack),
                Msg::Encoded(e, ack) => (Incoming::Encoded(e), ack),
                Msg::Flush(tx) => {
                    flushes.push(tx);
                    continue;
                }
                Msg::Shutdown(tx) => {
                    shutdown = Some(tx);
                    continue;
                }
            };
            match self.write_record(rec) {
                Ok(seq) => {
                    if let Some(a) = ack {
                        acks.push((a, seq));
                    }
                    // Segments stay near their size limit however large a batch is.
                    if self.seg.as_ref().is_some_and(|s| s.w.len() >= self.cfg.segment_max_bytes)
                        && let Err(e) = self.seal_open()
                    {
                        // The sealed file may not be durable: nobody in this batch is acknowledged.
                        seal_failed = Some(e.clone());
                        self.fail(e);
                    }
                }
                Err(e) => {
                    self.lost(1, &e.to_string());
                    if let Some(a) = ack {
                        let _ = a.send(Err(e));
                    }
                }
            }
        }
        self.shared.buffers.recycle(&mut self.spent);
        if !flushes.is_empty() && self.failed_at.is_some() {
            // A flush is a question about the disk: ask it again (at most every RETRY_EVERY).
            self.try_recover();
        }
        let must_sync = !acks.is_empty() || !flushes.is_empty() || shutdown.is_some();
        let durable = match seal_failed {
            Some(e) => Err(e),
            None if must_sync => self.sync(),
            None => self.flush_to_os(),
        };
        match durable {
            Ok(()) => {
                for (a, seq) in acks {
                    let _ = a.send(Ok(Written { seq }));
                }
                // Failed, what was queued meanwhile was not written: a flush cannot say
                // that everything is durable.
                let flushed = match self.failed_at {
                    None => Ok(()),
                    Some(_) => Err(JournalError::Failed(self.last_error())),
                };
                for f in flushes {
                    let _ = f.send(flushed.clone());
                }
            }
            Err(e) => {
                // Not counted as lost yet: the records may have reached the disk all the
                // same. Recovery counts the ones it does not find there, and a journal
                // that stops failed counts all that are not known to be durable.
                self.fail(e.clone());
                for (a, _) in acks {
                    let _ = a.send(Err(e.clone()));
                }
                for f in flushes {
                    let _ = f.send(Err(e.clone()));
                }
            }
        }
        if self.failed_at.is_none()
            && let Err(e) = self.maintain()
        {
            self.fail(e);
        }
        if let Some(tx) = shutdown {
            let r = self.finish().map(|sealed| ShutdownReport {
                chain_id: self.chain.chain_id,
                next_seq: self.state().next_seq,
                sealed,
            });
            let _ = tx.send(r);
            return true;
        }
        self.keep_unstated(false);
        false
    }

    /// The end of this writer: seal the open segment. A failed journal first recovers
    /// (at once, not at the next retry): sealing the segment it failed on would sign
    /// whatever its buffers still hold, records already reported lost among them. If
    /// it cannot recover, nothing is sealed (the open segment is left to the next
    /// process's recovery, or to the collector) and the records not known to be
    /// durable are counted lost. What the chain is still owed (losses no record states,
    /// records in doubt) is kept in its `lost` file for the next process of the chain.
    fn finish(&mut self) -> Result<Option<PathBuf>, JournalError> {
        let mut sealed = None;
        if self.failed_at.is_some() && !self.abandoned {
            sealed = self.recover_now();
        }
        let result = match self.failed_at {
            Some(_) => Err(JournalError::Failed(self.last_error())),
            None => self.seal_open().map(|s| s.or(sealed)),
        };
        let owed = self.owed();
        if result.is_err() {
            // This process cannot know which of them reached the disk: it counts them
            // all; the next one counts from the disk.
            let doubtful = owed.next.saturating_sub(owed.durable);
            if doubtful > 0 {
                self.lost(doubtful, "not known to be durable when the journal stopped, failed");
            }
            self.restate_lost_statements(0);
            self.durable_next = owed.next;
        }
        if !owed.is_nothing() && !self.abandoned {
            match lost::keep(&self.chain.dir, &owed) {
                Ok(()) => {
                    self.kept = None;
                    let kept = self.shared.lost_pending.load(Ordering::Acquire);
                    self.shared.lost_kept.store(kept, Ordering::Release);
                }
                Err(e) => {
                    tracing::error!(target: "kiroku::journal", chain = %self.chain.chain_id, "cannot keep the losses no record states for the next process of this chain: {e}")
                }
            }
        }
        result
    }

    fn write_record(&mut self, rec: Incoming) -> Result<u64, JournalError> {
        if self.failed_at.is_some() {
            self.try_recover();
        }
        if self.failed_at.is_some() {
            return Err(JournalError::Failed(self.last_error()));
        }
        let seq = self.state().next_seq;
        let lost = self.shared.lost_pending.swap(0, Ordering::AcqRel);
        // Any failure below: the loss count taken belongs to the next record written.
        let give_back = |shared: &Shared| shared.lost_pending.fetch_add(lost, Ordering::AcqRel);
        self.json.clear();
        match rec {
            Incoming::Encoded(e) => {
                let decoded = if lost == 0 {
                    e.write(seq, &mut self.json);
                    Ok(None)
                } else {
                    e.decode().map(Some)
                };
                self.spent.push(e.into_buffer());
                match decoded {
                    Ok(None) => {}
                    Ok(Some(r)) => self.encode(r, None, seq, lost),
                    Err(err) => {
                        give_back(&self.shared);
                        return Err(JournalError::Write(format!("an appended record did not read back: {err}")));
                    }
                }
            }
            Incoming::Pending(p) => {
                let PendingRecord { record, finish } = *p;
                self.encode(record, finish, seq, lost);
            }
        }
        if let Err(e) = self.ensure_segment() {
            give_back(&self.shared);
            self.fail(e.clone());
            return Err(e);
        }
        let seg = self.seg.as_mut().ok_or_else(|| JournalError::Failed("no open segment".into()))?;
        let before = seg.w.len();
        match seg.w.append_record(&self.json) {
            Ok(a) => {
                if lost > 0 {
                    self.stating.push((a.seq, lost));
                }
                self.dirty = true;
                self.records_since_checkpoint += 1;
                self.shared.written.fetch_add(1, Ordering::Relaxed);
                self.shared.bytes.fetch_add(seg.w.len() - before, Ordering::Relaxed);
                Ok(a.seq)
            }
            Err(e) => {
                give_back(&self.shared);
                let err = JournalError::Write(format!("{}: {e}", seg.path.display()));
                self.fail(err.clone());
                Err(err)
            }
        }
    }

    /// Serialise a record at `seq` into `self.json`, after its finisher.
    fn encode(&mut self, mut rec: AuditRecord, finish: Option<Finisher>, seq: u64, lost: u64) {
        // Chain position first: the finisher (extraction, redaction, the telemetry span)
        // sees the record as it will be written.
        rec.chain_id = self.chain.chain_id;
        rec.seq = seq;
        rec.records_lost_before = lost;
        if let Some(finish) = finish {
            if catch_unwind(AssertUnwindSafe(|| finish(&mut rec))).is_err() {
                rec.attributes.insert(
                    "kiroku.finisher_error".into(),
                    "extraction or redaction panicked; record kept without it".into(),
                );
            }
            rec.chain_id = self.chain.chain_id;
            rec.seq = seq;
        }
        rec.write_json(&mut self.json);
    }

    fn ensure_segment(&mut self) -> Result<(), JournalError> {
        if self.seg.is_some() {
            return Ok(());
        }
        let header = self.chain.state.next_header();
        let path = self.chain.dir.join(spool::segment_name(header.first_seq, "open"));
        let file =
            OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| JournalError::io(&path, &e))?;
        let w = SegmentWriter::new(
            BufWriter::with_capacity(256 << 10, SegmentFile { file, faults: self.cfg.faults.clone() }),
            header,
        )
        .map_err(|e| JournalError::Write(format!("{}: {e}", path.display())))?;
        spool::sync_dir(&self.chain.dir)?;
        self.seg = Some(OpenSegment { w, path, opened: Instant::now(), writeback: Writeback::default() });
        Ok(())
    }

    fn flush_to_os(&mut self) -> Result<(), JournalError> {
        if let Some(s) = &mut self.seg {
            s.w.get_mut().flush().map_err(|e| JournalError::io(&s.path, &e))?;
            if let Durability::Batched(_) = self.cfg.durability {
                s.writeback.advance(&s.w.get_ref().get_ref().file, s.w.len());
            }
        }
        if let Durability::Batched(iv) = self.cfg.durability
            && self.dirty
            && self.last_sync.elapsed() >= iv
        {
            return self.sync();
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        let Some(s) = &mut self.seg else {
            return Ok(());
        };
        s.w.get_mut().flush().map_err(|e| JournalError::io(&s.path, &e))?;
        if self.dirty {
            let t = Instant::now();
            s.w.get_ref().get_ref().sync_data().map_err(|e| JournalError::io(&s.path, &e))?;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.shared.fsync_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        let next = s.w.state().next_seq;
        self.durable_up_to(next);
        Ok(())
    }

    /// Periodic work: fsync for `Batched`, checkpoints, rotation by size and age.
    fn maintain(&mut self) -> Result<(), JournalError> {
        if let Durability::Batched(iv) = self.cfg.durability
            && self.dirty
            && self.last_sync.elapsed() >= iv
        {
            self.sync()?;
        }
        let Some(s) = &mut self.seg else {
            return Ok(());
        };
        let full = s.w.len() >= self.cfg.segment_max_bytes;
        let old = s.opened.elapsed() >= self.cfg.segment_max_age && s.w.records() > 0;
        if full || old {
            self.seal_open()?;
            return Ok(());
        }
        if self.records_since_checkpoint > 0 && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval {
            s.w.append_checkpoint(self.cfg.signer.as_ref(), &self.cfg.namespace, Timestamp::now())
                .map_err(|e| JournalError::Write(format!("{}: {e}", s.path.display())))?;
            self.dirty = true;
            self.records_since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
            if self.cfg.durability != Durability::Buffered {
                self.sync()?;
            } else {
                s.w.get_mut().flush().map_err(|e| JournalError::io(&s.path, &e))?;
            }
        }
        Ok(())
    }

    /// Seal the open segment (if it holds records): seal frame, fsync, new head,
    /// rename to `.seg`, fsync the directory.
    fn seal_open(&mut self) -> Result<Option<PathBuf>, JournalError> {
        let Some(s) = self.seg.take() else {
            return Ok(None);
        };
        let OpenSegment { w, path, .. } = s;
        let state = w.state().clone();
        // What was accepted, whatever happens next (recovery compares against it).
        self.chain.state = state.clone();
        let err = |e: &dyn std::fmt::Display| JournalError::Write(format!("{}: {e}", path.display()));
        let mut out = w.seal(self.cfg.signer.as_ref(), &self.cfg.namespace, Timestamp::now()).map_err(|e| err(&e))?;
        out.flush().map_err(|e| JournalError::io(&path, &e))?;
        out.get_ref().sync_all().map_err(|e| JournalError::io(&path, &e))?;
        spool::write_atomic(&self.chain.dir.join(spool::HEAD_FILE), &state.next_header().encode())?;
        let sealed = path.with_extension("seg");
        Faults::check(&self.cfg.faults, Op::Rename).map_err(|e| JournalError::io(&path, &e))?;
        fs::rename(&path, &sealed).map_err(|e| JournalError::io(&path, &e))?;
        spool::sync_dir(&self.chain.dir)?;
        self.durable_up_to(state.next_seq);
        self.dirty = false;
        self.records_since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        self.shared.segments_sealed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "kiroku::journal", file = %sealed.display(), "sealed segment");
        if let Some(hook) = &self.cfg.on_seal {
            hook();
        }
        Ok(Some(sealed))
    }

    fn fail(&mut self, e: JournalError) {
        if self.failed_at.is_none() {
            tracing::error!(target: "kiroku::journal", chain = %self.chain.chain_id, "journal failed: {e}");
        }
        self.failed_at = Some(Instant::now());
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = Some(e.to_string());
        }
        self.shared.healthy.store(false, Ordering::Release);
    }

    /// Why the journal failed, as last recorded.
    fn last_error(&self) -> String {
        self.shared.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default()
    }

    /// Every record below `next` is durable: their statements of losses stand, and the
    /// `lost` file an earlier process left goes once the record that states it is
    /// durable.
    fn durable_up_to(&mut self, next: u64) {
        self.durable_next = next;
        if !self.stating.is_empty() {
            self.stating.retain(|&(seq, _)| seq >= next);
        }
        if self.kept.as_ref().is_some_and(|k| next > k.next) {
            match lost::remove(&self.chain.dir) {
                Ok(()) => (self.kept, self.kept_durable) = (None, true),
                // Harmless: the next process finds the record that stated it, and removes it.
                Err(e) => tracing::warn!(target: "kiroku::journal", "{e}"),
            }
        }
    }

    /// What the chain is owed now: losses no record states, records not known durable.
    fn owed(&self) -> UnstatedLosses {
        UnstatedLosses {
            lost: self.shared.lost_pending.load(Ordering::Acquire),
            durable: self.durable_next,
            next: self.state().next_seq,
            stating: self.stating.clone(),
        }
    }

    /// Keep the losses no record states yet in the chain's `lost` file, so that a
    /// process killed before its next record leaves them to the next process of the
    /// chain: a newer count is written at most every KEEP_QUICK without fsync (a kill
    /// leaves it in the OS's cache, so the next process reads it), and made durable at
    /// most every KEEP_EVERY (a power loss leaves at most the last second's out). A
    /// failed journal keeps the records it holds in doubt too, lost or not: killed
    /// before a retry tells, its next process counts those the disk did not keep.
    /// `force`: the chain's next seq was just set from the disk, and a file kept before
    /// it counted seqs that are handed out again: written, durably, at once.
    fn keep_unstated(&mut self, force: bool) {
        self.keep_due = false;
        let in_doubt = self.failed_at.is_some() && self.durable_next < self.state().next_seq;
        if self.abandoned
            || (self.shared.lost_pending.load(Ordering::Acquire) == 0 && !in_doubt && !(force && self.kept.is_some()))
        {
            return;
        }
        let now = Instant::now();
        let durable_due = force || self.kept_at.is_none_or(|t| now - t >= KEEP_EVERY);
        if !durable_due && self.written_at.is_some_and(|t| now - t < KEEP_QUICK) {
            (self.keep_due, self.newer) = (true, true);
            return;
        }
        let owed = self.owed();
        if self.kept.as_ref() == Some(&owed) && (self.kept_durable || !durable_due) {
            // Nothing newer; what the file holds is made durable in time.
            (self.keep_due, self.newer) = (!self.kept_durable, false);
            return;
        }
        let kept = if owed.is_nothing() {
            lost::remove(&self.chain.dir).map(|()| (None, true))
        } else if durable_due {
            lost::keep(&self.chain.dir, &owed).map(|()| (Some(owed), true))
        } else {
            lost::keep_quick(&self.chain.dir, &owed).map(|()| (Some(owed), false))
        };
        self.written_at = Some(now);
        match kept {
            Ok((k, durable)) => {
                (self.kept, self.kept_durable) = (k, durable);
                if durable {
                    self.kept_at = Some(now);
                }
                (self.keep_due, self.newer) = (!durable, false);
            }
            // The disk is failing too, most likely: the journal's own failure says so.
            // Tried again, durably, a second later (not at once: it would spin on a
            // failing disk).
            Err(e) => {
                tracing::debug!(target: "kiroku::journal", "cannot keep the losses no record states yet: {e}");
                self.kept_at = Some(now);
                (self.keep_due, self.newer) = (true, false);
            }
        }
    }

    /// Records from seq `from` on are gone: the losses they stated go to the next record
    /// written (they were counted in `records_lost` when they happened).
    fn restate_lost_statements(&mut self, from: u64) {
        let gone: u64 = self.stating.iter().filter(|&&(seq, _)| seq >= from).map(|&(_, n)| n).sum();
        self.stating.retain(|&(seq, _)| seq < from);
        if gone > 0 {
            self.shared.lost_pending.fetch_add(gone, Ordering::AcqRel);
            tracing::warn!(target: "kiroku::journal", chain = %self.chain.chain_id, "{gone} earlier loss(es) stated by records that were lost go to the next record");
        }
    }

    fn lost(&self, n: u64, why: &str) {
        self.shared.lost_pending.fetch_add(n, Ordering::AcqRel);
        let total = self.shared.lost_total.fetch_add(n, Ordering::AcqRel) + n;
        tracing::error!(target: "kiroku::journal", chain = %self.chain.chain_id, lost_total = total, "{n} audit record(s) lost: {why}");
    }

    /// After a failure: re-validate the chain directory from disk (what the OS kept),
    /// cut a torn tail, seal what is there, and continue the chain from it. Records
    /// that were accepted but never reached the file are counted as lost.
    fn try_recover(&mut self) {
        let Some(failed) = self.failed_at else { return };
        if self.abandoned || failed.elapsed() < RETRY_EVERY {
            return;
        }
        self.recover_now();
    }

    /// [`Self::try_recover`] without waiting for the retry interval. Returns the segment
    /// recovery sealed, if any.
    fn recover_now(&mut self) -> Option<PathBuf> {
        self.failed_at = Some(Instant::now());
        let expected_next = self.state().next_seq;
        if let Some(s) = self.seg.take() {
            // What was accepted stays the state to compare the disk against, at this
            // attempt and any later one.
            self.chain.state = s.w.state().clone();
            // Drop the writer without flushing what it buffered: the file's tail is unknown.
            drop(s.w.into_inner().into_parts());
        }
        match spool::recover(&self.cfg, self.chain.chain_id, &self.chain.dir) {
            Ok(spool::Recovered::Continue(state, report)) => {
                if report.segment.is_some() {
                    tracing::warn!(target: "kiroku::journal", "{report}");
                }
                let next = state.next_seq;
                self.chain.state = state;
                self.recovered(expected_next, next);
                report.segment.map(|p| p.with_extension("seg"))
            }
            Ok(spool::Recovered::Abandoned(report)) => {
                self.abandon(&report);
                None
            }
            Err(e) => {
                tracing::warn!(target: "kiroku::journal", "journal still failing: {e}");
                None
            }
        }
    }

    /// End the chain: its open segment (or head) is corrupt, and its records hold seqs that
    /// were handed out, so no record may be appended to the chain again. This process
    /// stays failed; the next one with this writer name starts a new chain.
    fn abandon(&mut self, report: &spool::RecoveryReport) {
        self.abandoned = true;
        let (file, why) = match &report.corrupt {
            Some((p, why)) => (p.display().to_string(), why.as_str()),
            None => (self.chain.dir.display().to_string(), "no reason given"),
        };
        let mut reason = format!(
            "chain {} cannot continue: {file} is corrupt ({why}) and is left for the collector; restart the process to start a new chain",
            self.chain.chain_id
        );
        if let Err(e) = spool::abandon_chain(&self.chain.dir) {
            reason.push_str(&format!(" (setting the chain aside failed: {e}; recovery still refuses it)"));
        }
        tracing::error!(target: "kiroku::journal", "{reason}");
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = Some(reason);
        }
        self.shared.healthy.store(false, Ordering::Release);
    }

    fn recovered(&mut self, expected_next: u64, next: u64) {
        if expected_next > next {
            self.lost(expected_next - next, "accepted but not on disk when the journal failed");
        }
        self.restate_lost_statements(next);
        self.durable_up_to(next);
        self.keep_unstated(true);
        self.failed_at = None;
        self.dirty = false;
        self.shared.healthy.store(true, Ordering::Release);
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = None;
        }
        tracing::warn!(target: "kiroku::journal", chain = %self.chain.chain_id, next_seq = next, "journal recovered");
    }
}
