//! Chain identifiers: one chain per writer (instance x process).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of one hash chain: 16 bytes, written as a hyphenated lowercase UUID.
///
/// kiroku creates chain ids as UUIDv7 so they sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub [u8; 16]);

/// Text that is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chain id {0:?}: expected a hyphenated UUID such as 0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")]
pub struct ChainIdError(pub String);

impl ChainId {
    /// A fresh UUIDv7 chain id: 48 bits of Unix milliseconds then 74 random bits.
    pub fn new_v7() -> Self {
        let mut b = [0u8; 16];
        // A failing OS random source leaves the random bits zero: the time prefix and the
        // process id below still separate writers; we do not panic in a constructor.
        let _ = getrandom::getrandom(&mut b[6..]);
        let ms = (crate::Timestamp::now().unix_nanos() / 1_000_000) as u64;
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6] = 0x70 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        Self(b)
    }

    /// The raw 16 bytes, as hashed into every frame.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The hyphenated text, in a fixed buffer ([`crate::text`]).
    fn text(&self) -> [u8; 36] {
        let mut out = [b'-'; 36];
        for (bytes, at) in [(0..4, 0), (4..6, 9), (6..8, 14), (8..10, 19), (10..16, 24)] {
            crate::text::hex_into(&self.0[bytes], &mut out[at..]);
        }
        out
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::text::as_str(&self.text()))
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({self})")
    }
}

impl FromStr for ChainId {
    type Err = ChainIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ChainIdError(s.chars().take(64).collect());
        let b = s.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return Err(err());
        }
        let mut out = [0u8; 16];
        let mut digits = b.iter().filter(|c| **c != b'-');
        for byte in &mut out {
            let mut v = 0u8;
            for _ in 0..2 {
                let c = *digits.next().ok_or_else(err)?;
                let d = (c as char).to_digit(16).ok_or_else(err)? as u8;
                v = (v << 4) | d;
            }
            *byte = v;
        }
        Ok(Self(out))
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::text::as_str(&self.text()))
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed from the input when it can be (`Cow`'s own impl always allocates).
        let s = crate::record::Text::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ChainId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChainId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "description": "The hash chain this record belongs to (hyphenated lowercase UUID)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_buffer_text_is_the_formatted_text() {
        for seed in 0..200u8 {
            let id = ChainId(std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 17)));
            let mut slow = String::new();
            for (i, b) in id.0.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    slow.push('-');
                }
                slow.push_str(&format!("{b:02x}"));
            }
            assert_eq!(id.to_string(), slow);
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{slow}\""));
        }
    }

    #[test]
    fn round_trips_and_is_v7() {
        let id = ChainId::new_v7();
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "7");
        assert_eq!(s.parse::<ChainId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ChainId>().is_err());
        assert!("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7g".parse::<ChainId>().is_err());
    }

    #[test]
    fn parses_every_digit_of_either_case_in_every_place_and_nothing_else() {
        for seed in 0..64u8 {
            let id = ChainId(std::array::from_fn(|i| seed.wrapping_mul(53).wrapping_add((i as u8).wrapping_mul(29))));
            let text = id.to_string();
            assert_eq!(text.parse::<ChainId>().unwrap(), id);
            assert_eq!(text.to_uppercase().parse::<ChainId>().unwrap(), id);
            for at in 0..36 {
                for bad in [b'g', b'G', b'-', b' ', b'/', b':', b'@', b'`'] {
                    let mut b = text.clone().into_bytes();
                    if b[at] == bad {
                        continue;
                    }
                    b[at] = bad;
                    let t = String::from_utf8(b).unwrap();
                    assert!(t.parse::<ChainId>().is_err(), "{t}");
                }
            }
        }
        assert!("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7".parse::<ChainId>().is_err(), "too short");
        assert!("0192f3c4a5d6e-7f80-9a1b-2c3d4e5f6a7".parse::<ChainId>().is_err(), "no dash");
    }
}
