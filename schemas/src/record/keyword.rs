//! Record fields whose value is one of a few lowercase names (outcome, capture mode,
//! safeguard action): the names once, for the fast reader, the command line and the
//! columns alike. A test holds them to serde's names and to the JSON schema's list.

use super::{CaptureMode, Outcome, SafeguardAction};

/// A field whose JSON value is one of a fixed set of names.
pub trait Keyword: Copy + Sized + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];

    /// The name used in records and columns.
    fn name(self) -> &'static str;

    /// The value `name` stands for, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl Keyword for Outcome {
    const ALL: &'static [Self] = &[Self::Completed, Self::Error, Self::Aborted];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Keyword for CaptureMode {
    const ALL: &'static [Self] = &[Self::None, Self::Digest, Self::Redacted, Self::Full];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Keyword for SafeguardAction {
    const ALL: &'static [Self] = &[Self::Blocked, Self::Filtered, Self::Flagged, Self::Allowed];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value's name is serde's, and the list is the JSON schema's whole list.
    fn names_agree<
        T: Keyword + serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + schemars::JsonSchema,
    >() {
        for &k in T::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name(), "{k:?}");
            assert_eq!(T::from_name(k.name()), Some(k));
        }
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap();
        // Documented variants are listed as `oneOf` constants, bare ones as `enum`.
        let listed: Vec<&str> = match schema.get("oneOf") {
            Some(one_of) => one_of.as_array().unwrap().iter().map(|v| v["const"].as_str().unwrap()).collect(),
            None => schema["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect(),
        };
        let ours: Vec<&str> = T::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(listed, ours);
        assert_eq!(T::from_name("nonsense"), None);
    }

    #[test]
    fn names_are_serdes_and_complete() {
        names_agree::<Outcome>();
        names_agree::<CaptureMode>();
        names_agree::<SafeguardAction>();
    }
}
