//! Opening an object store from a URL, with credentials and endpoints taken the way the
//! ecosystem does: `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, ...), then the shared profile files (`AWS_PROFILE`), then instance
//! or container credentials; `GOOGLE_*` and `AZURE_*` variables for the other clouds.
//! TLS is required unless `AWS_ALLOW_HTTP=true` (or an `http://` endpoint is given
//! explicitly for a local S3-compatible server). Credentials are never logged: a
//! location displays as its URL without user info or query.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, RetryConfig};

use super::ShipError;
use super::profile::Profile;

/// A place in an object store: the store and a key prefix under it.
#[derive(Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    display: String,
    local: bool,
}

impl fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLocation").field("url", &self.display).finish_non_exhaustive()
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The URL without user info, query or fragment (which may hold secrets).
fn safe_display(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string().trim_end_matches('/').to_owned()
}

/// Install ring as the process's rustls provider (the object store clients are built
/// without one so that no second crypto library is compiled). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// S3 Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with the `s3:BypassGovernanceRetention` permission may still delete.
    Governance,
    /// Nobody, the root account included, can delete before the date.
    Compliance,
}

impl LockMode {
    /// The header value (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }
}

impl ObjectLocation {
    /// Open `url`: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// (also `abfs://`, `azure://`), `file:///absolute/dir`.
    ///
    /// ```
    /// use kiroku::ship::ObjectLocation;
    /// let dir = tempfile::tempdir()?;
    /// let loc = ObjectLocation::open(&format!("file://{}", dir.path().display()))?;
    /// assert!(loc.is_local());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(url: &str) -> Result<Self, ShipError> {
        Self::open_with(url, None)
    }

    /// Open an `s3://` location whose writes carry S3 Object Lock retention: every
    /// object put through it is locked in `mode` until `until` (the bucket must have
    /// Object Lock enabled; S3 then refuses to delete or overwrite that version before
    /// the date). Uploads carry a SHA-256 checksum, which S3 requires with a lock.
    /// Other schemes are refused: Google Cloud Storage and Azure lock whole buckets or
    /// containers with retention policies configured on the store itself.
    pub fn open_locked(url: &str, mode: LockMode, until: std::time::SystemTime) -> Result<Self, ShipError> {
        if !(url.starts_with("s3://") || url.starts_with("s3a://")) {
            return Err(ShipError::Config {
                url: url.to_owned(),
                message: "object lock is supported on s3:// locations only (use the store's bucket retention policy elsewhere)".into(),
            });
        }
        let until = kiroku_schemas::Timestamp::from_unix_nanos(
            until.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64),
        )
        .to_string();
        let mut headers = http::HeaderMap::new();
        let value = |v: &str| {
            http::HeaderValue::from_str(v)
                .map_err(|e| ShipError::Config { url: url.to_owned(), message: format!("object lock header: {e}") })
        };
        headers.insert("x-amz-object-lock-mode", value(mode.as_str())?);
        // Whole seconds, the form S3 documents.
        headers.insert("x-amz-object-lock-retain-until-date", value(&format!("{}Z", &until[..19]))?);
        // S3 wants an integrity header with a lock: the SHA-256 checksum the client adds,
        // announced the way AWS SDKs do.
        headers.insert("x-amz-sdk-checksum-algorithm", value("SHA256")?);
        Self::open_with(url, Some(ClientOptions::new().with_default_headers(headers)))
    }

    fn open_with(url: &str, s3_client: Option<ClientOptions>) -> Result<Self, ShipError> {
        let bad = |m: String| ShipError::Config { url: url.to_owned(), message: m };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let display = safe_display(&parsed);
        let path = parsed.path().trim_matches('/').to_owned();
        install_crypto_provider();
        let store_err = |e: object_store::Error| ShipError::Config { url: display.clone(), message: e.to_string() };
        let (store, prefix, local): (Arc<dyn ObjectStore>, String, bool) = match parsed.scheme() {
            "s3" | "s3a" => {
                let b = s3_builder(url, s3_client).with_retry(retry());
                (Arc::new(b.build().map_err(store_err)?), path, false)
            }
            "gs" => (
                Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(url)
                        .with_retry(retry())
                        .build()
                        .map_err(store_err)?,
                ),
                path,
                false,
            ),
            "az" | "abfs" | "abfss" | "azure" => (
                Arc::new(
                    MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry()).build().map_err(store_err)?,
                ),
                path,
                false,
            ),
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| bad("a file:// URL needs an absolute path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(store_err)?;
                (Arc::new(fs), String::new(), true)
            }
            other => return Err(bad(format!("unsupported scheme {other:?} (use s3://, gs://, az:// or file://)"))),
        };
        let prefix = ObjectPath::parse(&prefix).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store, prefix, display, local })
    }

    /// A location over an existing store (tests, custom back ends).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        display: impl Into<String>,
    ) -> Result<Self, ShipError> {
        let display = display.into();
        let prefix = ObjectPath::parse(prefix.trim_matches('/'))
            .map_err(|e| ShipError::Config { url: display.clone(), message: e.to_string() })?;
        Ok(Self { store, prefix, display, local: false })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// True for a `file://` location (no conditional overwrite, no object metadata).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The key of `rel` (`a/b/c`) under this location's prefix.
    pub fn key(&self, rel: &str) -> ObjectPath {
        let mut key = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            key = key.clone().join(part);
        }
        key
    }

    /// `rel` relative to this location, for a key under it.
    pub fn relative(&self, key: &ObjectPath) -> Option<String> {
        let parts: Vec<_> = key.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_owned()).collect();
        Some(parts.join("/"))
    }

    /// URL of `rel` under this location, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{}", self.display, rel.trim_start_matches('/'))
    }
}

/// Retries inside one store call: a few, within 20 s, so that a store that is down is
/// reported promptly (the shipper retries whole uploads with its own backoff).
fn retry() -> RetryConfig {
    RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(20), ..RetryConfig::default() }
}

/// An S3 builder from the URL, the environment and, for what those leave unset, the
/// shared profile files. An `http://` endpoint is allowed explicitly (local servers).
/// With `client` (object lock headers), uploads also carry a SHA-256 checksum.
fn s3_builder(url: &str, client: Option<ClientOptions>) -> AmazonS3Builder {
    let mut b = match client {
        None => AmazonS3Builder::from_env(),
        Some(options) => {
            // `from_env` with these client options underneath (setting them afterwards
            // would drop the client settings the environment gave, e.g. AWS_ALLOW_HTTP).
            let mut b = AmazonS3Builder::new().with_client_options(options).with_checksum_algorithm(Checksum::SHA256);
            for (key, value) in std::env::vars() {
                if key.starts_with("AWS_")
                    && let Ok(k) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
                {
                    b = b.with_config(k, value);
                }
            }
            b
        }
    }
    .with_url(url);
    let profile = Profile::from_files();
    let unset = |b: &AmazonS3Builder, k: AmazonS3ConfigKey| b.get_config_value(&k).is_none();
    if unset(&b, AmazonS3ConfigKey::AccessKeyId)
        && let (Some(id), Some(secret)) = (&profile.access_key_id, &profile.secret_access_key)
    {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = &profile.session_token {
            b = b.with_token(t);
        }
    }
    if unset(&b, AmazonS3ConfigKey::Region)
        && unset(&b, AmazonS3ConfigKey::DefaultRegion)
        && let Some(r) = &profile.region
    {
        b = b.with_region(r);
    }
    if unset(&b, AmazonS3ConfigKey::Endpoint)
        && let Some(e) = &profile.endpoint_url
    {
        b = b.with_endpoint(e);
    }
    if b.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some_and(|e| e.starts_with("http://")) {
        b = b.with_allow_http(true);
    }
    b
}
