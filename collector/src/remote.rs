//! A blocking facade over an object store location, for the collector's synchronous
//! code: each call runs on a small runtime owned by the facade.

use bytes::Bytes;
use futures_util::TryStreamExt;
use kiroku::ship::{Fetched, LockMode, ObjectLocation};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::error::CliError;

/// How a put must relate to what is stored.
#[derive(Debug, Clone)]
pub enum PutIf {
    /// Replace whatever is there.
    Always,
    /// Only if no object has the name.
    Absent,
    /// Only if the object is still this version.
    Unchanged(UpdateVersion),
}

/// Blocking access to one object store location.
#[derive(Debug)]
pub struct Remote {
    url: String,
    loc: ObjectLocation,
    rt: tokio::runtime::Runtime,
}

/// An object found by [`Remote::list`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// Path relative to the location.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written, as the store reports it.
    pub modified: std::time::SystemTime,
}

impl Remote {
    /// Open `url` (see [`ObjectLocation::open`]).
    pub fn open(url: &str) -> Result<Self, CliError> {
        let loc = ObjectLocation::open(url).map_err(|e| CliError::Usage(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Io(format!("starting a runtime for {url}: {e}")))?;
        Ok(Self { url: url.to_owned(), loc, rt })
    }

    /// The location.
    pub fn location(&self) -> &ObjectLocation {
        &self.loc
    }

    fn store(&self) -> &dyn ObjectStore {
        self.loc.store().as_ref()
    }

    fn err(&self, rel: &str, e: impl std::fmt::Display) -> CliError {
        CliError::Io(format!("{}: {e}", self.loc.url_of(rel)))
    }

    /// Names of the "directories" directly under `rel`.
    pub fn dirs(&self, rel: &str) -> Result<Vec<String>, CliError> {
        let key = self.loc.key(rel);
        let r = self.rt.block_on(self.store().list_with_delimiter(Some(&key))).map_err(|e| self.err(rel, e))?;
        let mut out: Vec<String> = r.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        out.sort();
        Ok(out)
    }

    /// Every object under `rel` (recursively), sorted by path.
    pub fn list(&self, rel: &str) -> Result<Vec<Listed>, CliError> {
        let key = self.loc.key(rel);
        let metas: Vec<_> = self
            .rt
            .block_on(self.store().list(Some(&key)).try_collect())
            .map_err(|e: object_store::Error| self.err(rel, e))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .filter_map(|m| {
                Some(Listed { rel: self.loc.relative(&m.location)?, size: m.size, modified: m.last_modified.into() })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Read an object; `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Fetched>, CliError> {
        self.rt.block_on(kiroku::ship::get_object(&self.loc, rel)).map_err(|e| CliError::Io(e.to_string()))
    }

    /// Write an object. `Ok(None)` when the condition did not hold; otherwise the new version.
    pub fn put(&self, rel: &str, bytes: Bytes, cond: PutIf) -> Result<Option<UpdateVersion>, CliError> {
        let mode = match cond {
            PutIf::Always => PutMode::Overwrite,
            PutIf::Absent => PutMode::Create,
            PutIf::Unchanged(v) => PutMode::Update(v),
        };
        let opts = PutOptions { mode, ..PutOptions::default() };
        let key = self.loc.key(rel);
        match self.rt.block_on(self.store().put_opts(&key, PutPayload::from_bytes(bytes), opts)) {
            Ok(r) => Ok(Some(UpdateVersion { e_tag: r.e_tag, version: r.version })),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Write an object (replacing any) with S3 Object Lock retention `mode` until
    /// `until`; the store must support it (see [`ObjectLocation::open_locked`]).
    pub fn put_locked(
        &self,
        rel: &str,
        bytes: Bytes,
        mode: LockMode,
        until: std::time::SystemTime,
    ) -> Result<UpdateVersion, CliError> {
        let locked = ObjectLocation::open_locked(&self.url, mode, until).map_err(|e| CliError::Usage(e.to_string()))?;
        let key = locked.key(rel);
        let put = locked.store().put_opts(&key, PutPayload::from_bytes(bytes), PutOptions::default());
        let r = self.rt.block_on(put).map_err(|e| self.err(rel, e))?;
        Ok(UpdateVersion { e_tag: r.e_tag, version: r.version })
    }

    /// Delete an object (absent is fine).
    pub fn delete(&self, rel: &str) -> Result<(), CliError> {
        let key = self.loc.key(rel);
        match self.rt.block_on(self.store().delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Copy `from` to `to` then delete `from`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), CliError> {
        let (f, t) = (self.loc.key(from), self.loc.key(to));
        match self.rt.block_on(self.store().copy_opts(&f, &t, Default::default())) {
            Ok(()) => {}
            // Moved already by an earlier (interrupted) run.
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.err(from, e)),
        }
        self.delete(from)
    }

    /// Download every object under each of `prefixes` into `dest` (same relative
    /// paths); returns how many objects.
    pub fn mirror(&self, prefixes: &[&str], dest: &std::path::Path) -> Result<u64, CliError> {
        let mut n = 0;
        for prefix in prefixes {
            for o in self.list(prefix)? {
                let Some(v) = self.get(&o.rel)? else { continue };
                let path = dest.join(&o.rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
                }
                std::fs::write(&path, &v.bytes).map_err(|e| CliError::io(&path, e))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// URL of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        self.loc.url_of(rel)
    }
}
