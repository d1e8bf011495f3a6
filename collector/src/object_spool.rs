//! A spool in an object store: the segments writers shipped there
//! ([`kiroku::ship`]), laid out like a local spool under the location:
//!
//! ```text
//! <location>/spool/<chain>/<first seq>.seg        shipped, ready to compact
//! <location>/spool/<chain>/<first seq>.corrupt    found corrupt by its journal: quarantined
//! <location>/spool/<chain>/lost                   losses its writer, now gone, stated in no record
//! <location>/compacted/<chain>/<first seq>.seg    compacted (deleted only by retention)
//! <location>/quarantine/<chain>/...               failed verification, with a report
//! ```
//!
//! Only sealed segments (and those a journal found corrupt) are shipped: a writer that
//! dies leaves its open segment in its local spool, where its restart (or a collector on
//! that machine) recovers it. A chain's `lost` file is shipped once its writer is gone
//! (`<location>/spool/<chain>/lost`): the compactor notes those losses in the manifest.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use kiroku_schemas::ChainId;
use kiroku_schemas::segment::ChainState;

use crate::error::CliError;
use crate::remote::{PutIf, Remote};
use crate::spool::{Orphan, OrphanGuard, SegmentRef, SpoolStore};
use kiroku::journal::UnstatedLosses;

/// Shipped segments in an object store.
#[derive(Debug)]
pub struct ObjectSpool {
    remote: Remote,
}

impl ObjectSpool {
    /// The spool under `url` (the location writers ship to).
    pub fn open(url: &str) -> Result<Self, CliError> {
        Ok(Self { remote: Remote::open(url)? })
    }

    fn rel(area: &str, seg: &SegmentRef) -> String {
        format!("{area}/{}/{}", seg.chain_id, seg.name)
    }

    /// The segments of a chain shipped as `.<ext>` (`seg`, `corrupt`), by first seq.
    fn listed(&self, chain: ChainId, ext: &str) -> Result<Vec<SegmentRef>, CliError> {
        let suffix = format!(".{ext}");
        let mut out: Vec<SegmentRef> = self
            .remote
            .list(&format!("spool/{chain}"))?
            .into_iter()
            .filter_map(|o| {
                let name = o.rel.rsplit('/').next()?.to_owned();
                let first_seq = name.strip_suffix(&suffix)?.parse().ok()?;
                Some(SegmentRef { chain_id: chain, first_seq, name, sealed: ext == "seg" })
            })
            .collect();
        out.sort_by_key(|s| s.first_seq);
        Ok(out)
    }
}

impl SpoolStore for ObjectSpool {
    fn chains(&self) -> Result<Vec<ChainId>, CliError> {
        Ok(self.remote.dirs("spool")?.iter().filter_map(|d| d.parse().ok()).collect())
    }

    fn sealed(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError> {
        self.listed(chain, "seg")
    }

    fn orphaned(&self, chain: ChainId) -> Result<Option<Orphan>, CliError> {
        // A writer's open segment stays on its machine; its `lost` file is shipped once
        // the writer is gone (its lock free there).
        let rel = kiroku::ship::lost_key(&chain.to_string());
        let Some(got) = self.remote.get(&rel)? else { return Ok(None) };
        let lost = std::str::from_utf8(&got.bytes)
            .map_err(|_| "not UTF-8 text".to_owned())
            .and_then(UnstatedLosses::parse)
            .map(Some)
            .map_err(|why| format!("{}: {why}", self.remote.url_of(&rel)));
        Ok(Some(Orphan { guard: OrphanGuard::unlocked(), open: Vec::new(), lost }))
    }

    fn corrupt(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError> {
        self.listed(chain, "corrupt")
    }

    fn quarantined(&self, chain: ChainId) -> Result<Vec<u64>, CliError> {
        let mut out: Vec<u64> = self
            .remote
            .list(&format!("quarantine/{chain}"))?
            .into_iter()
            .filter_map(|o| crate::spool::quarantined_first_seq(o.rel.rsplit('/').next()?))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn read(&self, seg: &SegmentRef) -> Result<Box<dyn Read + Send>, CliError> {
        let rel = Self::rel("spool", seg);
        let v =
            self.remote.get(&rel)?.ok_or_else(|| CliError::Io(format!("{}: not found", self.remote.url_of(&rel))))?;
        Ok(Box::new(Cursor::new(v.bytes)))
    }

    fn mark_compacted(&self, seg: &SegmentRef) -> Result<(), CliError> {
        self.remote.rename(&Self::rel("spool", seg), &Self::rel("compacted", seg))
    }

    fn quarantine(&self, seg: &SegmentRef, report: &str) -> Result<PathBuf, CliError> {
        let dir = format!("quarantine/{}", seg.chain_id);
        let listed = self.remote.list(&dir)?;
        let name =
            crate::spool::quarantine_name(&seg.name, |n| listed.iter().any(|o| o.rel.rsplit('/').next() == Some(n)));
        let to = format!("{dir}/{name}");
        self.remote.put(&format!("{to}.report.txt"), Bytes::from(report.to_owned()), PutIf::Always)?;
        self.remote.rename(&Self::rel("spool", seg), &to)?;
        Ok(PathBuf::from(self.remote.url_of(&to)))
    }

    fn set_head(&self, _chain: ChainId, _state: &ChainState) -> Result<(), CliError> {
        // Only sealed segments are shipped: the writer knows its head.
        Ok(())
    }

    fn compacted_before(&self, before: SystemTime) -> Result<Vec<String>, CliError> {
        // Last modified: when the segment was moved to compacted/, after its newest record.
        Ok(self
            .remote
            .list("compacted")?
            .into_iter()
            .filter(|o| o.modified < before)
            .map(|o| o.rel.trim_start_matches("compacted/").to_owned())
            .collect())
    }

    fn remove_compacted(&self, name: &str) -> Result<(), CliError> {
        self.remote.delete(&format!("compacted/{name}"))
    }
}
