//! Losses no record states yet, kept across a restart: the chain directory's `lost` file.
//!
//! Each record states the losses since the record before it (`records_lost_before`), so
//! losses after a process's last record can only be stated by the next record of the
//! chain, which the next process writes. A journal that owes such a statement writes this
//! file: as losses happen (a newer count within 10 ms without fsync, which a killed
//! process leaves in the OS's cache, and durably at most every second), while it is
//! failed and holds records in doubt (the same), at once when a retry hands out again seqs
//! the file says are in doubt, and when it stops. The journal that takes the chain back
//! reads it, and its first record states the count. Once the record that states it is
//! durable, the file is removed.
//!
//! A journal that is failed does not know whether its last records reached the disk.
//! The file says which seqs were in doubt, and the next process, which finds out from the
//! disk, counts exactly the ones that are missing, with the losses those missing records
//! stated:
//!
//! ```text
//! kiroku-lost 1
//! lost 2          losses that never had a seq (refused, dropped from a full queue)
//! durable 17      every record below this seq was durable when the file was written
//! next 20         the seq the journal would give next
//! stating 18 3    a record in doubt that states 3 earlier losses (zero or more lines)
//! ```
//!
//! Taken back at seq `n` (the chain's next seq on disk), the file owes
//! `lost + (next - n)` plus what the missing records (seq `n` and above) stated. When
//! `n > next`, a record at `next` is on disk, and it states the count (the first record
//! written after the file carries what the file holds), so the file is stale and removed. The journal that takes the chain back rewrites
//! the file as what it owes at `n` before it writes anything, so a crash before its first
//! record is durable leaves the count to the process after it, and never counts it twice.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::spool::{sync_dir, write_atomic};

/// Name of the file in the chain directory.
pub const LOST_FILE: &str = "lost";
const MAGIC: &str = "kiroku-lost 1";

/// What a journal that stopped still owed its chain: the content of the `lost` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnstatedLosses {
    /// Losses that never had a seq (refused, dropped from a full queue), and the losses
    /// stated by records known lost.
    pub lost: u64,
    /// Every record below this seq was durable when the journal stopped.
    pub durable: u64,
    /// The seq the journal would have given next.
    pub next: u64,
    /// Records in doubt (seq from `durable` to `next`) that state earlier losses:
    /// (seq, count).
    pub stating: Vec<(u64, u64)>,
}

impl UnstatedLosses {
    /// Nothing to keep: no loss and no record in doubt.
    pub fn is_nothing(&self) -> bool {
        self.lost == 0 && self.durable >= self.next
    }

    /// What is owed when the chain's next seq on disk is `n`; `None` when a record at
    /// `next` exists (the count was stated by it).
    pub fn at(&self, n: u64) -> Option<u64> {
        if n > self.next {
            return None;
        }
        let missing = self.next - n;
        let stated: u64 = self.stating.iter().filter(|(seq, _)| *seq >= n).map(|(_, c)| c).sum();
        Some(self.lost + missing + stated)
    }

    fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\nlost {}\ndurable {}\nnext {}\n", self.lost, self.durable, self.next);
        for (seq, n) in &self.stating {
            let _ = writeln!(s, "stating {seq} {n}");
        }
        s
    }

    /// The content of a `lost` file; the error says what is wrong, and on which line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, MAGIC)) => {}
            Some((_, other)) => return Err(format!("line 1: expected `{MAGIC}`, found `{other}`")),
            None => return Err("empty".into()),
        }
        let mut field = |name: &str| -> Result<u64, String> {
            let (i, l) = lines.next().ok_or_else(|| format!("ends before `{name}`"))?;
            let v = l
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| format!("line {i}: expected `{name} N`, found `{l}`"))?;
            v.parse().map_err(|_| format!("line {i}: `{v}` is not a count"))
        };
        let lost = field("lost")?;
        let durable = field("durable")?;
        let next = field("next")?;
        if durable > next {
            return Err(format!("durable {durable} is beyond next {next}"));
        }
        let mut stating = Vec::new();
        for (i, l) in lines {
            let bad = || format!("line {i}: expected `stating SEQ N`, found `{l}`");
            let mut parts = l.strip_prefix("stating ").ok_or_else(bad)?.split(' ');
            let (Some(seq), Some(n), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            let (seq, n) = (seq.parse::<u64>().map_err(|_| bad())?, n.parse::<u64>().map_err(|_| bad())?);
            if !(durable..next).contains(&seq) {
                return Err(format!("line {i}: seq {seq} is not in doubt (durable {durable}, next {next})"));
            }
            stating.push((seq, n));
        }
        Ok(Self { lost, durable, next, stating })
    }
}

impl std::fmt::Display for UnstatedLosses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} audit record(s) lost after the chain's last record", self.lost)?;
        if self.next > self.durable {
            write!(f, ", and seqs {} to {} in doubt (lost unless on disk)", self.durable, self.next - 1)?;
        }
        write!(f, "; the next record this writer appends to the chain states them")
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(LOST_FILE)
}

fn parse_at(p: &Path, text: &str) -> Result<UnstatedLosses, JournalError> {
    UnstatedLosses::parse(text).map_err(|why| {
        JournalError::Failed(format!(
            "{}: {why}; it holds audit records lost by an earlier process of this chain (inspect it, then fix or remove it)",
            p.display()
        ))
    })
}

/// The `lost` file of the chain directory `dir`, if there is one: what a process of the
/// chain that stopped still owed it (for `kiroku verify --spool` and investigators).
pub fn read_lost_file(dir: &Path) -> Result<Option<UnstatedLosses>, JournalError> {
    let p = path(dir);
    match fs::read_to_string(&p) {
        Ok(t) => parse_at(&p, &t).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JournalError::io(&p, &e)),
    }
}

/// Keep what a stopping journal owes, durably (replacing an older file).
pub(crate) fn keep(dir: &Path, owed: &UnstatedLosses) -> Result<(), JournalError> {
    write_atomic(&path(dir), owed.encode().as_bytes())
}

/// Replace the file with `owed` without waiting for the disk (a temporary file renamed
/// over it, no fsync): read whole, old or new, by a process that comes after a kill;
/// made durable by a later [`keep`].
pub(crate) fn keep_quick(dir: &Path, owed: &UnstatedLosses) -> Result<(), JournalError> {
    super::spool::replace_file(&path(dir), owed.encode().as_bytes(), false)
}

/// Remove the file (the record that states it is durable); no file is fine.
pub(crate) fn remove(dir: &Path) -> Result<(), JournalError> {
    let p = path(dir);
    match fs::remove_file(&p) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JournalError::io(&p, &e)),
    }
}

/// Take the chain's file back at seq `n` (the chain's next seq on disk): the losses the
/// next record must state. The file is rewritten as that count at `n` (or removed when
/// nothing is owed) before the journal writes anything. A file that cannot be read is
/// refused with what is wrong and where: its count would otherwise vanish.
pub(crate) fn take_back(dir: &Path, n: u64) -> Result<u64, JournalError> {
    let Some(owed) = read_lost_file(dir)? else {
        return Ok(0);
    };
    let count = match owed.at(n) {
        // Stated by the record at `next`, or nothing owed at all.
        None | Some(0) => {
            remove(dir)?;
            return Ok(0);
        }
        Some(count) => count,
    };
    if n < owed.durable {
        tracing::warn!(target: "kiroku::journal", file = %path(dir).display(), durable = owed.durable, found = n, "records the previous process knew durable are missing from the chain; counted lost");
    }
    let now = UnstatedLosses { lost: count, durable: n, next: n, stating: Vec::new() };
    if now != owed {
        keep(dir, &now)?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed() -> UnstatedLosses {
        UnstatedLosses { lost: 2, durable: 17, next: 20, stating: vec![(18, 3), (19, 1)] }
    }

    #[test]
    fn the_file_reads_back_as_written() {
        assert_eq!(UnstatedLosses::parse(&owed().encode()), Ok(owed()));
        let none = UnstatedLosses { lost: 4, durable: 9, next: 9, stating: Vec::new() };
        assert_eq!(UnstatedLosses::parse(&none.encode()), Ok(none));
    }

    #[test]
    fn what_is_owed_depends_on_what_the_disk_kept() {
        let o = owed();
        // Everything in doubt reached the disk: only the losses without a seq.
        assert_eq!(o.at(20), Some(2));
        // Seq 19 is missing, with the one loss it stated.
        assert_eq!(o.at(19), Some(2 + 1 + 1));
        // Seqs 18 and 19 are missing.
        assert_eq!(o.at(18), Some(2 + 2 + 4));
        assert_eq!(o.at(17), Some(2 + 3 + 4));
        // A record at `next` exists: a later process stated the count.
        assert_eq!(o.at(21), None);
    }

    #[test]
    fn a_damaged_file_is_refused_with_the_line_at_fault() {
        let cases = [
            ("", "empty"),
            ("kiroku-lost 2\n", "line 1"),
            ("kiroku-lost 1\nlost x\n", "line 2: `x` is not a count"),
            ("kiroku-lost 1\nlost 1\nnext 3\n", "line 3: expected `durable N`"),
            ("kiroku-lost 1\nlost 1\ndurable 5\nnext 3\n", "beyond next"),
            ("kiroku-lost 1\nlost 1\ndurable 1\nnext 3\nstating 7 1\n", "line 5: seq 7 is not in doubt"),
            ("kiroku-lost 1\nlost 1\ndurable 1\nnext 3\nstating 2\n", "line 5: expected `stating SEQ N`"),
            ("kiroku-lost 1\nlost 1\ndurable 1\n", "ends before `next`"),
        ];
        for (text, why) in cases {
            let err = UnstatedLosses::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn taking_back_rewrites_the_count_at_the_disks_seq_and_a_stale_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        keep(dir.path(), &owed()).unwrap();
        assert_eq!(take_back(dir.path(), 19).unwrap(), 4);
        // A crash before the next record is durable: the same count, once.
        assert_eq!(take_back(dir.path(), 19).unwrap(), 4);
        // The record at 19 was written (and stated it): nothing owed, file gone.
        assert_eq!(take_back(dir.path(), 20).unwrap(), 0);
        assert!(!dir.path().join(LOST_FILE).exists());
        assert_eq!(take_back(dir.path(), 20).unwrap(), 0);
        std::fs::write(dir.path().join(LOST_FILE), "kiroku-lost 1\nlost many\n").unwrap();
        let err = take_back(dir.path(), 20).unwrap_err().to_string();
        assert!(err.contains("lost: line 2: `many` is not a count") && err.contains("earlier process"), "{err}");
    }
}
