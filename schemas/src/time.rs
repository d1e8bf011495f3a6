//! Timestamps: UTC, nanosecond precision, RFC 3339 text in records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with nanosecond precision, written as RFC 3339 with nine fractional
/// digits and `Z` (`2026-11-21T23:57:10.123456789Z`).
///
/// Range: the years 1678 to 2261 (nanoseconds since the Unix epoch in an `i64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_nanos: i64,
}

/// Text that is not an RFC 3339 timestamp kiroku can represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl Timestamp {
    /// The instant `unix_nanos` nanoseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_nanos(unix_nanos: i64) -> Self {
        Self { unix_nanos }
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.unix_nanos
    }

    /// Microseconds since the Unix epoch (rounded toward negative infinity), the
    /// precision of Parquet `TIMESTAMP(MICROS, UTC)`.
    pub const fn unix_micros(self) -> i64 {
        self.unix_nanos.div_euclid(1_000)
    }

    /// The current time from the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The UTC calendar date as `YYYY-MM-DD` (the archive's partition key).
    pub fn date_string(self) -> String {
        crate::text::as_str(&self.text()[..10]).to_owned()
    }

    /// Whole days since 1970-01-01 UTC (floored): equal for two times exactly when their
    /// [`date_string`](Self::date_string)s are.
    pub fn unix_days(self) -> i64 {
        self.unix_nanos.div_euclid(86_400_000_000_000)
    }
}

// Howard Hinnant's days-from-civil algorithms (public domain), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` in a fixed buffer ([`crate::text`]).
    /// An `i64` of nanoseconds spans the years 1677 to 2262: always four digits.
    fn text(&self) -> [u8; 30] {
        let days = self.unix_days();
        let rem = self.unix_nanos.rem_euclid(86_400_000_000_000);
        let (y, m, d) = civil_from_days(days);
        let secs = rem / 1_000_000_000;
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, i64::from(m));
        put(8, 2, i64::from(d));
        put(11, 2, secs / 3600);
        put(14, 2, (secs / 60) % 60);
        put(17, 2, secs % 60);
        put(20, 9, rem % 1_000_000_000);
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::text::as_str(&self.text()))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`, `z` and a space
    /// separator are accepted as RFC 3339 allows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TimestampError { input: s.chars().take(64).collect(), reason };
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let part = &b[range];
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err("expected digits"));
            }
            Ok(part.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month as u32) {
            return Err(err("date out of range"));
        }
        if hour > 23 || min > 59 || sec > 60 {
            return Err(err("time out of range"));
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return Err(err("empty fraction"));
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' { o } else { -o }
            }
            _ => return Err(err("expected Z or a ±HH:MM offset at the end")),
        };
        let secs = days_from_civil(year, month as u32, day as u32) * 86_400 + hour * 3600 + min * 60 + sec.min(59)
            - offset_secs;
        secs.checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(nanos))
            .map(Self::from_unix_nanos)
            .ok_or_else(|| err("out of the representable range (1678-2261)"))
    }
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::text::as_str(&self.text()))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed from the input when it can be (`Cow`'s own impl always allocates).
        let s = crate::record::Text::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 UTC timestamp with nanosecond precision, e.g. 2026-11-21T23:57:10.123456789Z"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = Timestamp::from_unix_nanos(1_795_305_430_123_456_789);
        let s = t.to_string();
        assert_eq!(s, "2026-11-21T23:57:10.123456789Z");
        assert_eq!(s.parse::<Timestamp>().unwrap(), t);
        assert_eq!(t.date_string(), "2026-11-21");
        assert_eq!(t.unix_micros(), 1_795_305_430_123_456);
    }

    #[test]
    fn the_fixed_buffer_text_is_the_formatted_text() {
        let slow = |t: Timestamp| {
            let (days, rem) =
                (t.unix_nanos.div_euclid(86_400_000_000_000), t.unix_nanos.rem_euclid(86_400_000_000_000));
            let (y, m, d) = civil_from_days(days);
            let (secs, nanos) = (rem / 1_000_000_000, rem % 1_000_000_000);
            format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", secs / 3600, (secs / 60) % 60, secs % 60)
        };
        let day = 86_400_000_000_000i64;
        let mut cases = vec![0, -1, 1, 999_999_999, i64::MIN, i64::MAX];
        cases.extend((0..2000).map(|i| (i - 1000) * day * 53 + i * 7_919_000_003));
        for n in cases {
            let t = Timestamp::from_unix_nanos(n);
            assert_eq!(t.to_string(), slow(t), "{n}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", slow(t)), "{n}");
            if n != i64::MIN && n != i64::MAX {
                // The parser accepts 1678-2261, where every i64 of nanoseconds falls but
                // for the partial years at both ends.
                assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t, "{n}");
            }
        }
    }

    #[test]
    fn accepts_offsets_and_short_fractions() {
        let a: Timestamp = "2026-11-22T08:57:10.5+09:00".parse().unwrap();
        let b: Timestamp = "2026-11-21T23:57:10.500000000Z".parse().unwrap();
        assert_eq!(a, b);
        let epoch: Timestamp = "1970-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(epoch.unix_nanos(), 0);
        let before: Timestamp = "1969-12-31T23:59:59.999999999Z".parse().unwrap();
        assert_eq!(before.unix_nanos(), -1);
        assert_eq!(before.to_string(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T25:00:00Z",
            "x026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Zjunk",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }
}
