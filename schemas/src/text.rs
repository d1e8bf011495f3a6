//! ASCII text written into fixed buffers: hex digits, chain ids, timestamps. Every
//! record carries several of these; writing them through `fmt` digit by digit was a
//! tenth of the journal writer's time.

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into the start of `out` (two digits per byte).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
}

/// Text this crate wrote as ASCII into a buffer.
pub(crate) fn as_str(ascii: &[u8]) -> &str {
    // Only ASCII was written, so this never falls back.
    std::str::from_utf8(ascii).unwrap_or_default()
}
