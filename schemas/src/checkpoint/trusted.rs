//! [`TrustedKeys`]: the public keys a verifier accepts checkpoints from.
//!
//! A log outlives its signing keys: keys are rotated on a schedule, or replaced when one
//! may have leaked. After a rotation the same chain holds checkpoints signed by the old
//! key and by the new one, and an auditor who checks the whole log needs both. A file
//! of trusted keys lists them, one verifier key per line (`<name>+<key id>+<key>`, what
//! `kiroku keygen` writes to `signer.vkey`), with blank lines and `#` comments allowed:
//!
//! ```text
//! # 2026: retired 2027-01-05
//! kiroku+4d74aeb1+AbkVQUUcZYboMKTmyGFjf5Tagp6/BZgnY299jntQp8rU
//! # 2027
//! kiroku+55e52a23+AUje+7mqRUc2JWawQ7P9u1wS0CAm7RnWsX1vthIDGG/B
//! ```
//!
//! A checkpoint is accepted when a key of the set signed it and every signature in it
//! by a key of the set verifies; signatures by keys outside the set (witness
//! cosignatures) are ignored, as with one key.

use std::fmt;

use super::{Checkpoint, CheckpointError, NoteVerifier, key_names, open_note};

/// A non-empty set of checkpoint verifier keys, any of which may have signed a
/// checkpoint (keys rotated over a log's life).
///
/// ```
/// use kiroku_schemas::checkpoint::{Checkpoint, NoteSigner, TrustedKeys, sign_checkpoint};
///
/// let (old, new) = (NoteSigner::generate("kiroku")?, NoteSigner::generate("kiroku")?);
/// let file = format!("# retired\n{}\n{}\n", old.verifier().to_key_text(), new.verifier().to_key_text());
/// let trusted = TrustedKeys::from_key_text(&file)?;
///
/// let cp = Checkpoint { origin: "kiroku/log".into(), size: 1, root: [0; 32], extensions: vec![] };
/// for signer in [&old, &new] {
///     let note = sign_checkpoint(&cp, signer)?;
///     let (opened, by) = trusted.open_signed(&note)?;
///     assert_eq!((opened, by), (cp.clone(), &signer.verifier()));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<NoteVerifier>,
}

impl TrustedKeys {
    /// The set of `keys`: at least one, and no two different keys under one name and
    /// key id (a signature would not say which of them made it). A key listed twice
    /// counts once.
    pub fn new(keys: impl IntoIterator<Item = NoteVerifier>) -> Result<Self, CheckpointError> {
        let mut out: Vec<NoteVerifier> = Vec::new();
        for k in keys {
            match out.iter().find(|o| o.name == k.name && o.key_id == k.key_id) {
                Some(o) if *o == k => {}
                Some(_) => return Err(CheckpointError::BadKey("two different keys share one name and key id")),
                None => out.push(k),
            }
        }
        if out.is_empty() {
            return Err(CheckpointError::BadKey("no key in it (expected one verifier key per line)"));
        }
        Ok(Self { keys: out })
    }

    /// Parse a file of trusted keys: one verifier key per line; blank lines and lines
    /// starting with `#` are skipped. An error names the line.
    pub fn from_key_text(text: &str) -> Result<Self, CheckpointError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = NoteVerifier::from_key_text(line)
                .map_err(|e| CheckpointError::BadKeyLine { line: i + 1, source: Box::new(e) })?;
            keys.push(key);
        }
        Self::new(keys)
    }

    /// The keys, in the order given.
    pub fn keys(&self) -> &[NoteVerifier] {
        &self.keys
    }

    /// The keys of the set that `keep` accepts, in the set's order; `None` when it
    /// accepts none. (A part of a valid set is valid: no check can fail.)
    pub fn subset(&self, keep: impl Fn(&NoteVerifier) -> bool) -> Option<Self> {
        let keys: Vec<NoteVerifier> = self.keys.iter().filter(|k| keep(k)).cloned().collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Whether `key` is one of the set.
    pub fn contains(&self, key: &NoteVerifier) -> bool {
        self.keys.contains(key)
    }

    /// The keys as a file of trusted keys: one key text per line.
    pub fn to_key_text(&self) -> String {
        self.keys.iter().map(|k| k.to_key_text() + "\n").collect()
    }

    /// Verify a signed checkpoint note against the set and return its body.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        self.open_signed(note).map(|(cp, _)| cp)
    }

    /// Verify a signed checkpoint note against the set: its body, and the key of the
    /// set that signed it (of the note's first signature line by the set, if several did).
    pub fn open_signed(&self, note: &str) -> Result<(Checkpoint, &NoteVerifier), CheckpointError> {
        open_note(note, &self.keys)
    }
}

impl From<NoteVerifier> for TrustedKeys {
    fn from(key: NoteVerifier) -> Self {
        Self { keys: vec![key] }
    }
}

/// The keys' names and ids: `kiroku+4d74aeb1, kiroku+55e52a23`.
impl fmt::Display for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_names(&self.keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::cp;
    use crate::checkpoint::{NoteSigner, sign_checkpoint};

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::from_seed("kiroku-test", [seed; 32]).unwrap()
    }

    fn keys(seeds: &[u8]) -> TrustedKeys {
        TrustedKeys::new(seeds.iter().map(|&s| signer(s).verifier())).unwrap()
    }

    #[test]
    fn a_checkpoint_signed_by_any_trusted_key_opens_and_says_which() {
        let trusted = keys(&[1, 2, 3]);
        for seed in [1, 2, 3] {
            let note = sign_checkpoint(&cp(), &signer(seed)).unwrap();
            let (back, by) = trusted.open_signed(&note).unwrap();
            assert_eq!(back, cp());
            assert_eq!(*by, signer(seed).verifier());
        }
    }

    #[test]
    fn a_checkpoint_no_trusted_key_signed_is_refused_naming_the_keys() {
        let note = sign_checkpoint(&cp(), &signer(9)).unwrap();
        let err = keys(&[1, 2]).open(&note).unwrap_err();
        assert!(matches!(err, CheckpointError::NoSignatureByTrustedKey(_)), "{err:?}");
        let text = err.to_string();
        for seed in [1, 2] {
            let v = signer(seed).verifier().to_key_text();
            let id = v.split('+').nth(1).unwrap();
            assert!(text.contains(&format!("kiroku-test+{id}")), "{text}");
        }
        // One key alone keeps the one-key error.
        assert!(matches!(keys(&[1]).open(&note), Err(CheckpointError::NoSignatureByKey { .. })));
    }

    #[test]
    fn a_bad_signature_by_a_trusted_key_is_refused_even_beside_a_good_one() {
        let mut note = sign_checkpoint(&cp(), &signer(1)).unwrap();
        // A second signature line by key 2 over another body: it does not verify.
        let other = sign_checkpoint(&Checkpoint { size: 43, ..cp() }, &signer(2)).unwrap();
        note.push_str(other.lines().last().unwrap());
        note.push('\n');
        assert!(keys(&[1]).open(&note).is_ok(), "key 2 is a cosigner nobody trusts here");
        assert!(matches!(keys(&[1, 2]).open(&note), Err(CheckpointError::BadSignature(_))));
        // An edited body fails whichever key signed it.
        let edited = sign_checkpoint(&cp(), &signer(2)).unwrap().replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(keys(&[1, 2]).open(&edited), Err(CheckpointError::BadSignature(_))));
    }

    #[test]
    fn files_of_keys_round_trip_and_bad_lines_are_named() {
        let (a, b) = (signer(1).verifier(), signer(2).verifier());
        let file = format!("# old\n\n{}\n  {}  \n# new\n{}\n", a.to_key_text(), a.to_key_text(), b.to_key_text());
        let t = TrustedKeys::from_key_text(&file).unwrap();
        assert_eq!(t.keys(), &[a.clone(), b.clone()]);
        assert!(t.contains(&a) && t.contains(&b) && !t.contains(&signer(3).verifier()));
        assert_eq!(TrustedKeys::from_key_text(&t.to_key_text()).unwrap(), t);
        assert_eq!(TrustedKeys::from(a.clone()).to_key_text(), format!("{}\n", a.to_key_text()));

        let bad = format!("{}\n# fine\nkiroku+zz+AAAA\n", a.to_key_text());
        match TrustedKeys::from_key_text(&bad) {
            Err(CheckpointError::BadKeyLine { line: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(TrustedKeys::from_key_text("# nothing but comments\n\n").is_err());
        assert!(TrustedKeys::from_key_text("").is_err());
        assert!(TrustedKeys::from_key_text(&NoteSigner::generate("s").unwrap().to_key_text()).is_err());
    }

    #[test]
    fn a_subset_keeps_the_set_order_and_is_none_when_empty() {
        let t = keys(&[1, 2, 3]);
        let (one, three) = (signer(1).verifier(), signer(3).verifier());
        let part = t.subset(|k| *k == three || *k == one).unwrap();
        assert_eq!(part.keys(), &[one, three]);
        assert!(t.subset(|_| false).is_none());
    }

    #[test]
    fn two_keys_under_one_name_and_id_are_refused() {
        let a = signer(1).verifier();
        let mut forged = signer(2).verifier();
        forged.key_id = a.key_id;
        assert!(TrustedKeys::new([a.clone(), forged]).is_err());
        assert!(TrustedKeys::new(Vec::new()).is_err());
    }

    #[test]
    fn display_lists_names_and_ids() {
        let t = keys(&[1, 2]);
        let ids: Vec<String> =
            t.keys().iter().map(|k| k.to_key_text().split('+').take(2).collect::<Vec<_>>().join("+")).collect();
        assert_eq!(t.to_string(), ids.join(", "));
    }
}
