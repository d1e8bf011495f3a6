//! The scan for where a JSON string's bytes stop being plain: a quote, a backslash or a
//! control character, eight bytes at a time. The record writer ([`super::json`]) copies
//! plain runs and escapes the byte after them (with [`special_bytes`] in its own loop,
//! which measured faster on short strings than calling [`plain_run`]); the one-pass
//! reader ([`super::view::fast`]) borrows them.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `word` (eight string bytes, little-endian) that is a
/// quote, a backslash or a control character, and possibly of bytes above such a byte.
/// The lowest set bit is always exact: a subtraction's borrow runs only from a byte that
/// matched to the bytes above it, so false marks lie only above a true one.
#[inline]
pub(crate) fn special_bytes(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))) | control) & HIGH
}

/// How many leading bytes of `s` can be part of a string as they are: none is a quote, a
/// backslash or a control character. Eight bytes at a time; the first byte that is one of those
/// (or the last few, fewer than eight) is left to the caller, byte by byte.
#[inline]
pub(crate) fn plain_run(s: &[u8]) -> usize {
    let mut n = 0;
    while let Some(word) = s[n..].first_chunk::<8>() {
        let special = special_bytes(u64::from_le_bytes(*word));
        if special != 0 {
            return n + (special.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::plain_run;

    #[test]
    fn it_stops_at_the_first_special_byte_and_nowhere_else() {
        // Bytes that may stand in a string as they are, the UTF-8 high bytes included.
        let plain: Vec<u8> = (0x20u8..=0xFF).filter(|b| *b != b'"' && *b != b'\\').collect();
        for special in [b'"', b'\\', 0x00, 0x01, 0x1F] {
            for len in 0..24 {
                for at in 0..=len {
                    let mut s: Vec<u8> = (0..len).map(|i| plain[(i * 37 + at) % plain.len()]).collect();
                    if at < len {
                        s[at] = special;
                    }
                    // Whole words are skipped up to the one holding the special byte; a
                    // tail shorter than a word is left to the byte-by-byte reading.
                    let words_end = len / 8 * 8;
                    let want = if at < words_end { at } else { words_end };
                    assert_eq!(plain_run(&s), want, "{s:?}");
                }
            }
        }
    }
}
