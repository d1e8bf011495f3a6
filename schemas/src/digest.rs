//! 32-byte digests and their hex form.

use std::fmt;

mod many;
pub(crate) use many::SIDE_BY_SIDE_MAX;
pub use many::{blake3_many, blake3_of};

/// A 32-byte digest: a blake3 chain hash or a SHA-256 Merkle node.
pub type Hash = [u8; 32];

/// The all-zero hash: the `prev_hash` of the first record of a chain.
pub const ZERO_HASH: Hash = [0u8; 32];

/// Lowercase hex of any byte string.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    crate::text::hex_into(bytes, &mut out);
    // Only hex digits were written: the buffer becomes the string without a copy.
    String::from_utf8(out).unwrap_or_default()
}

/// A hex string that is not a 32-byte digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex digest: {0:?}")]
pub struct HexError(pub String);

/// Parse 64 hex digits (either case) into a [`Hash`](type@Hash).
pub fn hash_from_hex(s: &str) -> Result<Hash, HexError> {
    let err = || HexError(s.chars().take(80).collect());
    let b = s.as_bytes();
    if b.len() != 64 {
        return Err(err());
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or_else(err)?;
        let lo = hex_val(pair[1]).ok_or_else(err)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// blake3 of `bytes` as lowercase hex: the digest form used in records.
pub fn blake3_hex(bytes: &[u8]) -> String {
    to_hex(&blake3_of(bytes))
}

/// Displays a hash as hex without allocating a `String` first.
pub struct HexDisplay<'a>(pub &'a [u8]);

impl fmt::Display for HexDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h: Hash = core::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(hash_from_hex(&to_hex(&h)).unwrap(), h);
        assert_eq!(HexDisplay(&h).to_string(), to_hex(&h));
        assert!(hash_from_hex("zz").is_err());
        assert!(hash_from_hex(&"g".repeat(64)).is_err());
    }
}
