//! Fault injection at the file-operation level, for tests of what the journal does when
//! the disk fails (in the spirit of Tessera's POSIX fault tests). Every segment write,
//! fsync and rename goes through [`SegmentFile`] / [`Faults::check`], so a test can make
//! the next one fail with an I/O error and watch the journal report, refuse (under
//! `FailClosed`) and recover, without damaging what was written before.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Switches that make file operations fail. Cheap to check: one relaxed atomic load.
#[derive(Debug, Default)]
pub struct Faults {
    /// Fail every write to a segment file.
    pub fail_writes: AtomicBool,
    /// Fail every fsync of a segment file.
    pub fail_syncs: AtomicBool,
    /// Fail every rename (sealing) of a segment file.
    pub fail_renames: AtomicBool,
    /// Fail every recovery of the chain directory (the disk still failing when the
    /// journal retries, or when it stops).
    pub fail_recoveries: AtomicBool,
    /// Fail recovery's fresh copy of a segment (no room for it on the disk).
    pub fail_copies: AtomicBool,
}

/// Which operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Sync,
    Rename,
    Recover,
    Copy,
}

impl Faults {
    /// A shared set of switches, all off.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Turn every switch off.
    pub fn clear(&self) {
        for f in [&self.fail_writes, &self.fail_syncs, &self.fail_renames, &self.fail_recoveries, &self.fail_copies] {
            f.store(false, Ordering::SeqCst);
        }
    }

    pub(crate) fn check(faults: &Option<Arc<Self>>, op: Op) -> io::Result<()> {
        let Some(f) = faults else { return Ok(()) };
        let on = match op {
            Op::Sync => f.fail_syncs.load(Ordering::Relaxed),
            Op::Rename => f.fail_renames.load(Ordering::Relaxed),
            Op::Recover => f.fail_recoveries.load(Ordering::Relaxed),
            Op::Copy => f.fail_copies.load(Ordering::Relaxed),
        };
        if on { Err(io::Error::other(format!("injected {op:?} failure"))) } else { Ok(()) }
    }
}

/// A segment file whose writes can be made to fail.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) file: File,
    pub(crate) faults: Option<Arc<Faults>>,
}

impl Write for SegmentFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.faults.as_ref().is_some_and(|f| f.fail_writes.load(Ordering::Relaxed)) {
            return Err(io::Error::other("injected write failure"));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl SegmentFile {
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        Faults::check(&self.faults, Op::Sync)?;
        self.file.sync_data()
    }

    pub(crate) fn sync_all(&self) -> io::Result<()> {
        Faults::check(&self.faults, Op::Sync)?;
        self.file.sync_all()
    }
}
