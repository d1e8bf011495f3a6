//! Checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.
//!
//! A checkpoint commits to the first `size` records of one chain by their RFC 9162 root:
//!
//! ```text
//! kiroku/0193f000-0000-7000-8000-00000000c0de
//! 42
//! 2H2nR4Cfn3y5hK1PuAr8lNkiVmzbKxZb3PGdbjQj0GU=
//! time 2026-11-21T10:00:00.000000000Z
//!
//! — kiroku-prod Ab3xK...base64(key id || signature)...
//! ```
//!
//! The origin line is `<namespace>/<chain id>`, so a checkpoint of one chain can never
//! pass for another. Keys use the signed-note key text of `golang.org/x/mod/sumdb/note`:
//! `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>` for signers and
//! `<name>+<key id hex>+<base64(0x01 || public key)>` for verifiers, so standard
//! transparency-log tooling reads them.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{ChainId, Hash, Timestamp};

mod trusted;
pub use trusted::TrustedKeys;

/// Signature algorithm identifier of Ed25519 in signed notes.
const ED25519_ALG: u8 = 0x01;

/// The checkpoint body: origin, tree size, root hash and extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity: `<namespace>/<chain id>` for kiroku chains.
    pub origin: String,
    /// Number of records committed to.
    pub size: u64,
    /// RFC 9162 root of those records.
    pub root: Hash,
    /// Extension lines (kiroku writes `time <RFC 3339>`).
    pub extensions: Vec<String>,
}

/// Why a checkpoint, signed note or key is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text does not follow the checkpoint or signed-note format.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No signature by the expected key was found.
    #[error("checkpoint carries no signature by key {name}+{key_id}")]
    NoSignatureByKey {
        /// Expected key name.
        name: String,
        /// Expected key id (hex).
        key_id: String,
    },
    /// No signature by any of several trusted keys was found (they are listed).
    #[error("checkpoint carries no signature by any of the trusted keys ({0})")]
    NoSignatureByTrustedKey(String),
    /// A signature by the expected key does not verify.
    #[error("checkpoint signature by key {0} does not verify")]
    BadSignature(String),
    /// A line of a file of trusted keys is not a verifier key.
    #[error("line {line}: {source}")]
    BadKeyLine {
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        source: Box<CheckpointError>,
    },
    /// Key text is not a signed-note key of the expected kind.
    #[error("invalid key: {0}")]
    BadKey(&'static str),
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error("key file {path} has mode {mode:o}: a signing key must be readable by its owner only (chmod 600)")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a valid key.
    #[error("key file {path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with its content.
        source: CheckpointError,
    },
}

impl Checkpoint {
    /// A checkpoint for `size` records of `chain` with `root`, stamped with `time`.
    pub fn for_chain(namespace: &str, chain: ChainId, size: u64, root: Hash, time: Timestamp) -> Self {
        Self { origin: format!("{namespace}/{chain}"), size, root, extensions: vec![format!("time {time}")] }
    }

    /// The note body: every line ends with `\n`.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a note body (without signatures).
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let rest = body.strip_suffix('\n').ok_or(CheckpointError::Malformed("body does not end with a newline"))?;
        let mut lines = rest.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(CheckpointError::Malformed("empty origin line"))?;
        let size_line = lines.next().ok_or(CheckpointError::Malformed("missing tree size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(CheckpointError::Malformed("tree size is not a decimal without leading zeros"));
        }
        let size = size_line.parse().map_err(|_| CheckpointError::Malformed("tree size out of range"))?;
        let root_line = lines.next().ok_or(CheckpointError::Malformed("missing root hash line"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CheckpointError::Malformed("root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }

    /// Parse the body of a signed note without checking any signature (to inspect a
    /// checkpoint when no key is at hand; never to trust it).
    pub fn parse_note_unverified(note: &str) -> Result<Self, CheckpointError> {
        let split = note.find("\n\n").ok_or(CheckpointError::Malformed("no blank line before the signatures"))?;
        Self::parse_body(&note[..split + 1])
    }

    /// The chain id named by the origin's last path component, if it is one.
    pub fn chain_id(&self) -> Option<ChainId> {
        self.origin.rsplit('/').next()?.parse().ok()
    }

    /// The `time` extension, if present and valid.
    pub fn time(&self) -> Option<Timestamp> {
        self.extensions.iter().find_map(|e| e.strip_prefix("time ")?.parse().ok())
    }
}

/// Signs checkpoint notes. Implement it to keep the key in an HSM or KMS; [`NoteSigner`]
/// is the file-based implementation.
pub trait CheckpointSigner: Send + Sync {
    /// Key name, as it appears in signature lines.
    fn name(&self) -> &str;
    /// The 4-byte signed-note key id.
    fn key_id(&self) -> [u8; 4];
    /// Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], CheckpointError>;
}

/// Sign a checkpoint: its body, a blank line, one signature line.
pub fn sign_checkpoint(cp: &Checkpoint, signer: &dyn CheckpointSigner) -> Result<String, CheckpointError> {
    let body = cp.body();
    let sig = signer.sign(body.as_bytes())?;
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&signer.key_id());
    blob.extend_from_slice(&sig);
    Ok(format!("{body}\n\u{2014} {} {}\n", signer.name(), B64.encode(blob)))
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n', '\t'])
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_ALG]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// An Ed25519 signing key with its signed-note name. Its `Debug` output never shows
/// the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &crate::digest::to_hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|_| CheckpointError::BadKey("the operating system's random source failed"))?;
        Self::from_seed(name, seed)
    }

    /// The key with Ed25519 seed `seed` (for tests and test vectors).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::BadKey("key names must be non-empty without '+' or spaces"));
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(Self { name: name.to_owned(), key_id: key_id(name, key.verifying_key().as_bytes()), key })
    }

    /// Parse `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_key_text(text: &str) -> Result<Self, CheckpointError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CheckpointError::BadKey("signer key must start with PRIVATE+KEY+"))?;
        let (name, id, bytes) = split_key_text(rest)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| CheckpointError::BadKey("seed is not 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(CheckpointError::BadKey("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The secret key text. Keep it out of logs.
    pub fn to_key_text(&self) -> String {
        let mut blob = vec![ED25519_ALG];
        blob.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, crate::digest::to_hex(&self.key_id), B64.encode(blob))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Read a signer key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let p = path.display().to_string();
        if let Some(mode) = open_mode(path).map_err(|source| KeyFileError::Io { path: p.clone(), source })? {
            return Err(KeyFileError::TooOpen { path: p, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io { path: p.clone(), source })?;
        Self::from_key_text(&text).map_err(|source| KeyFileError::Invalid { path: p, source })
    }

    /// Write the signer key to a new file with mode 0600 (never overwrites).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write as _;
        let p = path.display().to_string();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|source| KeyFileError::Io { path: p.clone(), source })?;
        f.write_all(format!("{}\n", self.to_key_text()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| KeyFileError::Io { path: p, source })
    }
}

impl CheckpointSigner for NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], CheckpointError> {
        Ok(self.key.sign(message).to_bytes())
    }
}

fn split_key_text(rest: &str) -> Result<(&str, [u8; 4], Vec<u8>), CheckpointError> {
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::BadKey("expected <name>+<key id>+<key>"));
    };
    if id_hex.len() != 8 {
        return Err(CheckpointError::BadKey("key id is not 8 hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16)
        .map_err(|_| CheckpointError::BadKey("key id is not 8 hex digits"))?
        .to_be_bytes();
    let bytes = B64.decode(b64).map_err(|_| CheckpointError::BadKey("key is not base64"))?;
    match bytes.split_first() {
        Some((&ED25519_ALG, key)) => Ok((name, id, key.to_vec())),
        _ => Err(CheckpointError::BadKey("not an Ed25519 signed-note key")),
    }
}

/// An Ed25519 public key with its signed-note name: what a third party needs to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parse `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn from_key_text(text: &str) -> Result<Self, CheckpointError> {
        let (name, id, bytes) = split_key_text(text.trim_end())?;
        if !valid_key_name(name) {
            return Err(CheckpointError::BadKey("key names must be non-empty without '+' or spaces"));
        }
        let raw: [u8; 32] = bytes.try_into().map_err(|_| CheckpointError::BadKey("public key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| CheckpointError::BadKey("not a valid Ed25519 point"))?;
        if key_id(name, &raw) != id {
            return Err(CheckpointError::BadKey("key id does not match the key"));
        }
        Ok(Self { name: name.to_owned(), key_id: id, key })
    }

    /// The public key text.
    pub fn to_key_text(&self) -> String {
        let mut blob = vec![ED25519_ALG];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, crate::digest::to_hex(&self.key_id), B64.encode(blob))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verify a signed checkpoint note and return its body. Signatures by other keys
    /// (witness cosignatures) are allowed and ignored; one by this key must verify.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        open_note(note, std::slice::from_ref(self)).map(|(cp, _)| cp)
    }
}

/// The key's name and id as signature lines name it: `kiroku+4d74aeb1`.
impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.name, crate::digest::to_hex(&self.key_id))
    }
}

/// The keys' names and ids as signature lines name them: `kiroku+4d74aeb1, kiroku+55e52a23`.
fn key_names(keys: &[NoteVerifier]) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Open a signed note against `keys`: every signature by one of them must verify, and at
/// least one must be there; signatures by other keys (witness cosignatures) are ignored.
/// Returns the body and the key of its first signature line by one of `keys`.
fn open_note<'k>(note: &str, keys: &'k [NoteVerifier]) -> Result<(Checkpoint, &'k NoteVerifier), CheckpointError> {
    let split = note.find("\n\n").ok_or(CheckpointError::Malformed("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
    let sigs = sigs.strip_suffix('\n').ok_or(CheckpointError::Malformed("note does not end with a newline"))?;
    let mut signed_by = None;
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(CheckpointError::Malformed("signature line does not start with an em dash"))?;
        let (name, b64) = rest.split_once(' ').ok_or(CheckpointError::Malformed("signature line lacks a key name"))?;
        let blob = B64.decode(b64).map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
        if blob.len() < 4 {
            return Err(CheckpointError::Malformed("signature shorter than its key id"));
        }
        let Some(key) = keys.iter().find(|k| k.name == name && blob[..4] == k.key_id) else {
            continue;
        };
        let bad = || CheckpointError::BadSignature(key.to_string());
        let sig = ed25519_dalek::Signature::from_slice(&blob[4..]).map_err(|_| bad())?;
        key.key.verify_strict(body.as_bytes(), &sig).map_err(|_| bad())?;
        signed_by.get_or_insert(key);
    }
    let Some(key) = signed_by else {
        return Err(match keys {
            [only] => CheckpointError::NoSignatureByKey {
                name: only.name.clone(),
                key_id: crate::digest::to_hex(&only.key_id),
            },
            _ => CheckpointError::NoSignatureByTrustedKey(key_names(keys)),
        });
    };
    Ok((Checkpoint::parse_body(body)?, key))
}

/// The permission bits of a secret file (a signing key, a caller secret) when its group
/// or others may access it, `None` when only its owner may (always `None` where file
/// modes do not exist).
pub fn open_mode(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("kiroku-test", [7; 32]).unwrap()
    }

    /// A checkpoint to sign in tests (also those of `trusted`).
    pub(super) fn cp() -> Checkpoint {
        Checkpoint::for_chain(
            "kiroku",
            "0193f000-0000-7000-8000-00000000c0de".parse().unwrap(),
            42,
            [9; 32],
            Timestamp::from_unix_nanos(0),
        )
    }

    #[test]
    fn sign_and_open() {
        let note = sign_checkpoint(&cp(), &signer()).unwrap();
        assert!(note.starts_with("kiroku/0193f000-0000-7000-8000-00000000c0de\n42\n"));
        let back = signer().verifier().open(&note).unwrap();
        assert_eq!(back, cp());
        assert_eq!(back.chain_id(), cp().chain_id());
        assert_eq!(back.time(), Some(Timestamp::from_unix_nanos(0)));
    }

    #[test]
    fn rejects_modified_notes() {
        let note = sign_checkpoint(&cp(), &signer()).unwrap();
        let v = signer().verifier();
        assert!(matches!(v.open(&note.replacen("\n42\n", "\n43\n", 1)), Err(CheckpointError::BadSignature(_))));
        let other = NoteSigner::from_seed("kiroku-test", [8; 32]).unwrap();
        assert!(matches!(other.verifier().open(&note), Err(CheckpointError::NoSignatureByKey { .. })));
        assert!(v.open(&note[..note.len() - 1]).is_err());
        assert!(v.open(&format!("{note}junk\n")).is_err());
        // A flipped bit anywhere in the signed note fails.
        for i in 0..note.len() {
            let mut b = note.clone().into_bytes();
            b[i] ^= 0x01;
            if let Ok(s) = String::from_utf8(b) {
                assert!(v.open(&s).is_err(), "flip at {i} accepted");
            }
        }
    }

    #[test]
    fn cosignatures_are_ignored() {
        let mut note = sign_checkpoint(&cp(), &signer()).unwrap();
        let witness = NoteSigner::from_seed("witness.example", [1; 32]).unwrap();
        let sig = witness.sign(cp().body().as_bytes()).unwrap();
        let mut blob = witness.key_id().to_vec();
        blob.extend_from_slice(&sig);
        note.push_str(&format!("\u{2014} witness.example {}\n", B64.encode(blob)));
        assert_eq!(signer().verifier().open(&note).unwrap(), cp());
        assert_eq!(witness.verifier().open(&note).unwrap(), cp());
    }

    #[test]
    fn key_texts_round_trip() {
        let s = signer();
        let back = NoteSigner::from_key_text(&s.to_key_text()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
        let v = NoteVerifier::from_key_text(&s.verifier().to_key_text()).unwrap();
        assert_eq!(v, s.verifier());
        assert!(!format!("{s:?}").contains(&s.to_key_text()[20..]));
        let mut wrong_id = s.verifier().to_key_text();
        wrong_id.replace_range(12..13, if &wrong_id[12..13] == "0" { "1" } else { "0" });
        assert!(NoteVerifier::from_key_text(&wrong_id).is_err());
        assert!(NoteSigner::from_seed("bad name", [0; 32]).is_err());
    }

    #[test]
    fn parse_body_rejects_malformed() {
        for bad in ["", "o\n", "o\n01\nAAAA\n", "o\n1\nAAAA\n", "o\nx\n", "\n1\n"] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
    }
}
