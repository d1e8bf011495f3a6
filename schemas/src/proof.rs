//! The C2SP tlog-proof text format: one record's inclusion proof with its checkpoint.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! index 5
//! <base64 hash>          (inclusion path, leaf's sibling first)
//! ...
//!
//! <signed checkpoint note, verbatim>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Hash;
use crate::checkpoint::{Checkpoint, CheckpointError, TrustedKeys};
use crate::merkle::{self, ProofError};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the record in the chain (= its seq).
    pub index: u64,
    /// The inclusion path.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// Why a tlog-proof is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// Not in the tlog-proof format.
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    /// The checkpoint does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not verify against the checkpoint.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

impl TlogProof {
    /// The proof text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parse proof text strictly.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let malformed = TlogProofError::Malformed;
        let mut rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(malformed("first line is not c2sp.org/tlog-proof@v1"))?;
        let line = |rest: &mut &str| -> Result<String, TlogProofError> {
            let (l, r) = rest.split_once('\n').ok_or(malformed("unexpected end of proof"))?;
            *rest = r;
            Ok(l.to_owned())
        };
        let mut l = line(&mut rest)?;
        let mut extra = None;
        if let Some(e) = l.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| malformed("extra is not base64"))?);
            l = line(&mut rest)?;
        }
        let idx = l.strip_prefix("index ").ok_or(malformed("missing index line"))?;
        if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) || (idx.len() > 1 && idx.starts_with('0')) {
            return Err(malformed("index is not a decimal without leading zeros"));
        }
        let index = idx.parse().map_err(|_| malformed("index out of range"))?;
        let mut hashes = Vec::new();
        loop {
            let l = line(&mut rest)?;
            if l.is_empty() {
                break;
            }
            if hashes.len() >= 64 {
                return Err(malformed("more than 64 proof hashes"));
            }
            let h: Hash = B64
                .decode(&l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(malformed("proof line is not a base64 SHA-256 hash"))?;
            hashes.push(h);
        }
        if rest.is_empty() {
            return Err(malformed("missing checkpoint"));
        }
        Ok(Self { extra, index, hashes, checkpoint: rest.to_owned() })
    }

    /// Verify that the record whose chain hash is `record_hash` is at `index` in the
    /// chain committed to by the checkpoint signed by one of `keys`. Returns the
    /// checkpoint.
    pub fn verify(&self, record_hash: &Hash, keys: &TrustedKeys) -> Result<Checkpoint, TlogProofError> {
        let cp = keys.open(&self.checkpoint)?;
        merkle::verify_inclusion(&merkle::leaf_hash(record_hash), self.index, cp.size, &self.hashes, &cp.root)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::checkpoint::{NoteSigner, sign_checkpoint};

    #[test]
    fn round_trip_and_verify() {
        let signer = NoteSigner::from_seed("k", [3; 32]).unwrap();
        let records: Vec<Hash> = (0..11u8).map(|i| [i; 32]).collect();
        let leaves: Vec<Hash> = records.iter().map(|r| merkle::leaf_hash(r)).collect();
        let root = merkle::root_of(&leaves);
        let cp = Checkpoint::for_chain("kiroku", crate::ChainId([1; 16]), 11, root, Timestamp::from_unix_nanos(5));
        let note = sign_checkpoint(&cp, &signer).unwrap();
        for i in 0..11u64 {
            let p = TlogProof {
                extra: (i == 3).then(|| b"hi".to_vec()),
                index: i,
                hashes: merkle::inclusion_proof(&leaves, i).unwrap(),
                checkpoint: note.clone(),
            };
            let text = p.to_text();
            let back = TlogProof::parse(&text).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.verify(&records[i as usize], &signer.verifier().into()).unwrap(), cp);
            assert!(back.verify(&records[(i as usize + 1) % 11], &signer.verifier().into()).is_err());
            let mut wrong = back.clone();
            wrong.index = (i + 1) % 11;
            assert!(wrong.verify(&records[i as usize], &signer.verifier().into()).is_err());
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "c2sp.org/tlog-proof@v1\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\nx",
            "c2sp.org/tlog-proof@v1\nindex 1\nnotbase64\n\nx",
            "c2sp.org/tlog-proof@v1\nindex 1\n\n",
            "c2sp.org/tlog-proof@v2\nindex 1\n\nx",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
