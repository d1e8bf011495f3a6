//! Redaction of personal data and secrets before anything is persisted.
//!
//! Built-in rules: e-mail addresses, phone numbers (Japanese domestic and mobile forms,
//! international `+CC` forms), payment card numbers (13-19 digits, Luhn-checked),
//! Japanese My Number (12 digits, check digit verified), IPv4/IPv6 addresses, API keys
//! and bearer tokens (`Bearer ...`, `sk-...`, AWS access key ids, GitHub and Slack
//! tokens, `api_key=...`-style assignments). Add custom regexes and JSON paths to drop.
//!
//! JSON bodies are redacted value by value, keys included, in the text as it was sent
//! (structure, order and spacing kept, listed paths removed; see `redact/json.rs`); anything
//! else as text. Matches become `[REDACTED:<rule>]`.

mod json;

use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

type Check = fn(&str) -> bool;

/// A cheap test that every text the rule can match passes.
type Screen = fn(&[u8]) -> bool;

#[derive(Clone)]
struct Rule {
    name: Arc<str>,
    re: Regex,
    check: Option<Check>,
    screen: Option<Screen>,
}

/// Texts at least this long are tested rule by rule, each rule with its own literal
/// prefilter (and [`Screen`]): on 2 KiB of prose that is ~1 µs, where the set's one DFA
/// pass, which no prefilter can skip ahead, takes ~3.3 µs. Shorter texts (keys, ids,
/// model names) take the set's single pass, cheaper than one call per rule.
const RULE_BY_RULE_FROM: usize = 128;

/// Every IPv6 match holds `::` or seven colons; the rule's own search would otherwise
/// crawl through any text with hex letters in it.
fn may_hold_ipv6(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"::").is_some() || memchr::memchr_iter(b':', text).nth(6).is_some()
}

/// A redaction policy.
#[derive(Clone, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// All rules at once: one pass tells which rules can match at all.
    set: Option<RegexSet>,
    remove: Vec<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish()
    }
}

/// A custom pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid redaction pattern {name:?}: {source}")]
pub struct PatternError {
    name: String,
    source: regex::Error,
}

/// Patterns are ASCII (word boundaries, digits, classes): fast DFA matching, and
/// Japanese text next to a number is a boundary.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).unicode(false).build()
}

fn rule(name: &str, pattern: &str, check: Option<Check>) -> Rule {
    // The built-in patterns are fixed strings tested below; they always compile.
    let re = compile(pattern).unwrap_or_else(|e| panic!("built-in pattern {name}: {e}"));
    Rule { name: name.into(), re, check, screen: None }
}

impl Redactor {
    /// No rules: captured bodies are kept as they are (capture mode `full`).
    pub fn none() -> Self {
        Self::default()
    }

    /// The built-in rules.
    pub fn builtin() -> Self {
        let rules = vec![
            rule("bearer", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*", None),
            rule(
                "api_key",
                r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}",
                None,
            ),
            rule(
                "secret",
                r#"(?i)\b(?:api[_-]?key|secret|token|password|passwd)["']?\s*[:=]\s*["']?[^\s"',}]{8,}"#,
                None,
            ),
            rule("email", r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}", None),
            rule("card", r"\b\d(?:[ \-]?\d){12,18}\b", Some(luhn_ok)),
            rule("my_number", r"\b\d{4}[ \-]?\d{4}[ \-]?\d{4}\b", Some(my_number_ok)),
            rule(
                "phone",
                r"(?:\+\d{1,3}[ \-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ \-]?\d{1,4}){1,3}[ \-]?\d{3,4}\b|\b0\d{1,4}-\d{1,4}-\d{3,4}\b|\b0[5789]0\d{8}\b|\(0\d{1,4}\)\s?\d{1,4}-\d{3,4}\b)",
                None,
            ),
            rule("ipv4", r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b", None),
            Rule {
                screen: Some(may_hold_ipv6),
                ..rule(
                    "ipv6",
                    r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:?){1,6}\b",
                    None,
                )
            },
        ];
        Self::with_rules(rules)
    }

    fn with_rules(rules: Vec<Rule>) -> Self {
        let set = RegexSetBuilder::new(rules.iter().map(|r| r.re.as_str())).unicode(false).build().ok();
        Self { rules, set, remove: Vec::new() }
    }

    /// Add a custom rule: matches of `pattern` become `[REDACTED:<name>]`.
    pub fn pattern(mut self, name: &str, pattern: &str) -> Result<Self, PatternError> {
        let re = compile(pattern).map_err(|source| PatternError { name: name.to_owned(), source })?;
        self.rules.push(Rule { name: name.into(), re, check: None, screen: None });
        let remove = std::mem::take(&mut self.remove);
        let mut out = Self::with_rules(self.rules);
        out.remove = remove;
        Ok(out)
    }

    /// Remove a JSON field before storing: a dotted path from the document root, `*`
    /// matching every array element or object member (`messages.*.name`, `user`).
    pub fn remove_json_path(mut self, path: &str) -> Self {
        self.remove.push(path.trim_start_matches("$.").split('.').map(str::to_owned).collect());
        self
    }

    /// Redact a text.
    pub fn redact_text(&self, text: &str) -> String {
        self.redacted(text).unwrap_or_else(|| text.to_owned())
    }

    /// The redacted text, or `None` when no rule matches (no copy made).
    fn redacted(&self, text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let hits: Vec<usize> = if bytes.len() >= RULE_BY_RULE_FROM {
            (self.rules.iter().enumerate())
                .filter(|(_, r)| r.screen.is_none_or(|may| may(bytes)) && r.re.is_match(bytes))
                .map(|(i, _)| i)
                .collect()
        } else {
            match &self.set {
                // Most text holds nothing to redact: a plain match test stops at the first
                // hit and is cheaper than asking which rules match (an overlapping search).
                Some(set) if !set.is_match(bytes) => return None,
                Some(set) => set.matches(bytes).into_iter().collect(),
                None => (0..self.rules.len()).collect(),
            }
        };
        if hits.is_empty() {
            return None;
        }
        let mut out = text.as_bytes().to_vec();
        for i in hits {
            let r = &self.rules[i];
            let replaced = r.re.replace_all(&out, |caps: &regex::bytes::Captures<'_>| {
                let m = &caps[0];
                match r.check {
                    Some(check) if !check(&String::from_utf8_lossy(m)) => m.to_vec(),
                    _ => format!("[REDACTED:{}]", r.name).into_bytes(),
                }
            });
            out = replaced.into_owned();
        }
        // Matches are ASCII and replacements are ASCII: the text stays valid UTF-8.
        let out = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        (out != text).then_some(out)
    }

    /// Redact a body: JSON value by value when it is one well-formed JSON document
    /// (member order, spacing and untouched strings kept as sent, listed paths removed),
    /// as text otherwise. Invalid UTF-8 is replaced, never stored raw.
    pub fn redact_body(&self, bytes: &[u8]) -> String {
        match std::str::from_utf8(bytes).ok().and_then(|text| json::redact(self, text).ok()) {
            Some(out) => out,
            None => self.redact_text(&String::from_utf8_lossy(bytes)),
        }
    }
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// Luhn checksum of a card number.
pub fn luhn_ok(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 1 { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x })
        .sum();
    sum.is_multiple_of(10)
}

/// Check digit of a Japanese My Number (individual number, 12 digits).
pub fn my_number_ok(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 12 {
        return false;
    }
    let body = &d[..11];
    let sum: u32 = (1..=11u32).map(|n| body[11 - n as usize] * if n <= 6 { n + 1 } else { n - 5 }).sum();
    let r = sum % 11;
    let check = if r <= 1 { 0 } else { 11 - r };
    check == d[11]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid My Number for tests: check digit computed by the formula.
    pub(crate) fn valid_my_number() -> String {
        let body = "12345678901";
        (0..10).map(|c| format!("{body}{c}")).find(|s| my_number_ok(s)).unwrap()
    }

    #[test]
    fn redacts_seeded_pii_and_secrets() {
        let mn = valid_my_number();
        let seeds = [
            "taro.yamada@example.co.jp",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            mn.as_str(),
            "090-1234-5678",
            "03-1234-5678",
            "09012345678",
            "+81 90 1234 5678",
            "+1 (415) 555-0100",
            "192.168.10.20",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "fe80::1ff:fe23:4567:890a",
            "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX",
            "AKIAIOSFODNN7EXAMPLE",
        ];
        let r = Redactor::builtin();
        // Short texts go through the rule set, long ones rule by rule: both must catch all.
        let prose = "a deadbeef cafe of ordinary text, ".repeat(5);
        for s in seeds {
            for text in [format!("連絡先は{s}です。"), format!("{prose}連絡先は{s}です。{prose}")] {
                let out = r.redact_text(&text);
                assert!(!out.contains(s), "{s} survived: {out}");
                assert!(out.contains("[REDACTED:"), "{out}");
            }
        }
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        let r = Redactor::builtin();
        for s in [
            "order 12345",
            "1234 5678 9012 3456 is not luhn",
            "version 1.2.3",
            "in 2026 we had 300 requests",
            "temperature 0.7",
        ] {
            assert_eq!(r.redact_text(s), s);
        }
        // A 12-digit number with a wrong check digit is not a My Number.
        let mn = valid_my_number();
        let wrong = format!("{}{}", &mn[..11], (mn[11..].parse::<u32>().unwrap() + 1) % 10);
        assert!(!my_number_ok(&wrong));
        assert_eq!(r.redact_text(&format!("id {wrong}")), format!("id {wrong}"));
    }

    #[test]
    fn json_bodies_keep_structure_and_drop_paths() {
        let r = Redactor::builtin().remove_json_path("user").remove_json_path("messages.*.name");
        let body = serde_json::json!({"model": "m", "user": "u-1", "messages": [{"role": "user", "name": "Taro", "content": "mail me at a@b.jp"}], "n": 4111111111111111u64});
        let out: serde_json::Value = serde_json::from_str(&r.redact_body(body.to_string().as_bytes())).unwrap();
        assert_eq!(out["model"], "m");
        assert!(out.get("user").is_none());
        assert!(out["messages"][0].get("name").is_none());
        assert_eq!(out["messages"][0]["content"], "mail me at [REDACTED:email]");
        assert_eq!(out["n"], "[REDACTED:card]");
    }

    #[test]
    fn custom_patterns_and_invalid_utf8() {
        let r = Redactor::none().pattern("employee", r"EMP-\d{6}").unwrap();
        assert_eq!(r.redact_text("id EMP-123456"), "id [REDACTED:employee]");
        assert!(Redactor::none().pattern("bad", "(").is_err());
        assert_eq!(Redactor::builtin().redact_body(b"\xff\xfe a@b.jp"), "\u{fffd}\u{fffd} [REDACTED:email]");
    }
}
