//! The stored JSON of a record, written the way `serde_json::to_writer` writes it
//! (compact, fields in declaration order, the same escapes and number forms: tested byte
//! for byte against serde_json below), with each string scanned for what needs an escape
//! eight bytes at a time.
//!
//! serde_json looks up every byte of a string in a table, one byte per step. A record is
//! mostly text that needs no escape (ids, routes, attributes, captured bodies), and that
//! scan was most of the cost of serialising a 1 KiB record on the appending thread
//! (`perf` of `cargo bench -p kiroku --bench journal`). Here a string's bytes are read
//! as 64-bit words: one word test ([`special_bytes`], which the one-pass reader shares)
//! finds whether any of eight bytes is a quote, a backslash or a control character, and
//! the plain bytes before the first such byte are copied at once.

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::plain_run::special_bytes;

/// Append `value`'s compact JSON to `out`: the bytes `serde_json::to_writer` writes.
///
/// Fails only where serde_json would: a map key that is not a string, an integer, a bool,
/// a char or a finite float, or a `Serialize` impl that reports its own error. `out` may
/// then hold part of the value.
pub(crate) fn write<T: ?Sized + Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(Json(out))
}

/// Why a value could not be written as JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Error(String);

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl Error {
    fn key() -> Self {
        Error("a map key must be a string, an integer, a bool, a char or a finite float".into())
    }
}

/// What each byte becomes inside a JSON string: 0 for itself, else the letter after the
/// backslash (`u` for `\u00XX`). serde_json's table.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Append the escape of `byte`, one that [`ESCAPE`] marks.
#[inline]
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(byte)] {
        b'u' => {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]])
        }
        letter => out.extend_from_slice(&[b'\\', letter]),
    }
}

/// Append `s` as a JSON string, quotes included.
fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `run` is where the bytes not yet copied start; `i` where the scan is.
    let (mut run, mut i) = (0, 0);
    while let Some(word) = bytes[i..].first_chunk::<8>() {
        let marks = special_bytes(u64::from_le_bytes(*word));
        if marks == 0 {
            i += 8;
            continue;
        }
        let at = i + (marks.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[run..at]);
        push_escape(out, bytes[at]);
        i = at + 1;
        run = i;
    }
    for (at, &byte) in bytes.iter().enumerate().skip(i) {
        if ESCAPE[usize::from(byte)] != 0 {
            out.extend_from_slice(&bytes[run..at]);
            push_escape(out, byte);
            run = at + 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

fn push_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A float as serde_json writes it: shortest round-trip digits, `null` when not finite.
fn push_float(out: &mut Vec<u8>, v: impl zmij::Float, finite: bool) {
    if finite {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The ten integer methods of a `Serializer`, each `|self, v| body`.
macro_rules! integers {
    (|$out:ident, $v:ident| $body:expr) => {
        integers!(@each $out $v $body; serialize_i8 i8, serialize_i16 i16, serialize_i32 i32,
            serialize_i64 i64, serialize_i128 i128, serialize_u8 u8, serialize_u16 u16,
            serialize_u32 u32, serialize_u64 u64, serialize_u128 u128);
    };
    (@each $out:ident $v:ident $body:expr; $($method:ident $t:ty),*) => {$(
        fn $method(self, $v: $t) -> Result<(), Error> {
            let $out = self;
            $body
        }
    )*};
}

/// The serializer: one value into the buffer.
struct Json<'a>(&'a mut Vec<u8>);

/// A sequence, tuple, map or struct being written: the comma goes before every member
/// but the first, and `close` after the last.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    close: &'static [u8],
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut Vec<u8>, open: &[u8], close: &'static [u8]) -> Self {
        out.extend_from_slice(open);
        Compound { out, first: true, close }
    }

    /// An enum variant that carries data: `{"variant":` then the data.
    fn variant(out: &'a mut Vec<u8>, variant: &str, open: &[u8], close: &'static [u8]) -> Self {
        out.push(b'{');
        push_str(out, variant);
        out.push(b':');
        Self::open(out, open, close)
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(Json(self.out))
    }

    fn field<T: ?Sized + Serialize>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        push_str(self.out, key);
        self.out.push(b':');
        value.serialize(Json(self.out))
    }

    fn close(self) -> Result<(), Error> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl<'a> ser::Serializer for Json<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(|out, v| {
        push_int(out.0, v);
        Ok(())
    });
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        push_float(self.0, v, v.is_finite());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        push_float(self.0, v, v.is_finite());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        push_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        push_str(self.0, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // serde_json writes bytes as an array of numbers.
        let mut seq = Compound::open(self.0, b"[", b"]");
        for b in v {
            seq.element(b)?;
        }
        seq.close()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        push_str(self.0, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let inner = Compound::variant(self.0, variant, b"", b"}");
        value.serialize(Json(inner.out))?;
        inner.close()
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(Compound::open(self.0, b"[", b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(Compound::variant(self.0, variant, b"[", b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(Compound::open(self.0, b"{", b"}"))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(Compound::variant(self.0, variant, b"{", b"}}"))
    }
}

/// The sequence-shaped compound traits: each member after a comma, then the close.
macro_rules! sequence_like {
    ($($name:ident :: $method:ident),*) => {$(
        impl ser::$name for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

sequence_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(Key(self.out))
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.out.push(b':');
        value.serialize(Json(self.out))
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// The struct-shaped compound traits: each field's name and value after a comma.
macro_rules! struct_like {
    ($($name:ident),*) => {$(
        impl ser::$name for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// A map key: JSON keys are strings, so numbers and bools are written quoted, as
/// serde_json does, and anything else is refused.
struct Key<'a>(&'a mut Vec<u8>);

impl Key<'_> {
    fn quoted(self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.0.push(b'"');
        write(self.0);
        self.0.push(b'"');
        Ok(())
    }
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(|o| o.extend_from_slice(if v { b"true" } else { b"false" }))
    }
    integers!(|key, v| key.quoted(|o| push_int(o, v)));
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(Error::key());
        }
        self.quoted(|o| push_float(o, v, true))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(Error::key());
        }
        self.quoted(|o| push_float(o, v, true))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        push_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        push_str(self.0, v);
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        push_str(self.0, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(Error::key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::key())
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::key())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::key())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Error> {
        Err(Error::key())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::key())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::write;

    fn ours<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        write(v, &mut out).unwrap();
        out
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        // Each ASCII byte alone, and at every offset of a word, between plain bytes.
        for b in 0u8..0x80 {
            let c = char::from(b);
            for lead in 0..17 {
                let s = format!("{}{c}{}", "a".repeat(lead), "z".repeat(9));
                assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap(), "byte {b:#04x} at {lead}");
            }
        }
        // Every escape at once, next to each other and next to multi-byte characters.
        let all: String = (0u8..0x80).map(char::from).chain("é記録😀\u{7f}".chars()).collect();
        for s in [all.clone(), all.repeat(3), format!("{all}記{all}")] {
            assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn a_word_of_bytes_above_the_escapes_is_not_escaped() {
        // Bytes 0x20 after a control byte: the borrow of the control byte's test must not
        // mark them (the scan goes on after each escape, from the next byte).
        let s = "\u{1f} !\u{0}\"#\\]\u{1f}\u{20}\u{21}\u{22}\u{5b}\u{5c}\u{5d}";
        assert_eq!(ours(s), serde_json::to_vec(s).unwrap());
        let s = "\u{0}".repeat(8) + &" ".repeat(8) + &"\u{0} ".repeat(8);
        assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { a: Option<f64>, b: Vec<u8> },
    }

    #[derive(Serialize)]
    struct Everything {
        shapes: Vec<Shape>,
        tuple: (bool, char, u128, i128),
        unit: (),
        floats: [f64; 6],
        small: f32,
        int_keys: BTreeMap<i64, &'static str>,
        bool_keys: BTreeMap<bool, u8>,
        #[serde(with = "serde_bytes_like")]
        raw: Vec<u8>,
        #[serde(flatten)]
        rest: BTreeMap<String, serde_json::Value>,
    }

    mod serde_bytes_like {
        pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let v = Everything {
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "t\"".into()),
                Shape::Struct { a: Some(0.1), b: vec![] },
                Shape::Struct { a: None, b: vec![1, 2] },
            ],
            tuple: (true, '\n', u128::MAX, i128::MIN),
            unit: (),
            floats: [0.0, -0.0, 1e300, 0.0010030090270812437, f64::NAN, f64::INFINITY],
            small: 1.1,
            int_keys: [(-1, "minus"), (20, "twenty")].into(),
            bool_keys: [(false, 0), (true, 1)].into(),
            raw: vec![0, 255],
            rest: serde_json::from_str(r#"{"x":{"y":[1,2.5,"z",null,{}]},"e":[]}"#).unwrap(),
        };
        assert_eq!(String::from_utf8(ours(&v)).unwrap(), String::from_utf8(serde_json::to_vec(&v).unwrap()).unwrap());
    }

    #[test]
    fn a_key_json_cannot_hold_is_refused() {
        let m: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(write(&m, &mut Vec::new()).is_err());
        assert!(serde_json::to_vec(&m).is_err());
        let m: BTreeMap<Option<u8>, u8> = [(None, 3)].into();
        assert!(write(&m, &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn any_json_value_is_written_as_serde_json_writes_it(
            text in "[ -~\u{0}-\u{1f}é記]{0,64}",
            n in any::<i64>(),
            f in any::<f64>(),
        ) {
            let v = serde_json::json!({ "text": text, "list": [n, f, text, {"k": [text]}], "n": n });
            prop_assert_eq!(ours(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
