//! Who called, and the W3C trace context of the call.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::record::{Caller, TraceContext};

/// How the caller is identified. Credentials are never recorded: an API key becomes
/// `key:<first 16 bytes of keyed blake3, hex>`, and the client's IP address (when the
/// server puts its `SocketAddr` in the request extensions, as `kiroku proxy` does)
/// `ip:<the same>`.
#[derive(Clone)]
pub struct CallerPolicy {
    subject_header: Option<HeaderName>,
    tenant_header: Option<HeaderName>,
    /// The key of every digest: public unless a secret was set.
    key: [u8; 32],
    /// API keys become the subject (as digests).
    key_digests: bool,
    /// Client addresses are recorded (as digests).
    client_addrs: bool,
}

impl std::fmt::Debug for CallerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerPolicy")
            .field("subject_header", &self.subject_header)
            .field("tenant_header", &self.tenant_header)
            .field("key", &"<keyed>")
            .field("key_digests", &self.key_digests)
            .field("client_addrs", &self.client_addrs)
            .finish()
    }
}

/// Headers that carry an API key on their own: Anthropic's and others' `x-api-key`,
/// Azure OpenAI's `api-key`, the Gemini API's `x-goog-api-key` (lowercase, as
/// `HeaderName` keeps them).
const KEY_HEADERS: [&str; 3] = ["x-api-key", "api-key", "x-goog-api-key"];

/// Headers that carry credentials.
const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "anthropic-api-key",
    KEY_HEADERS[0],
    KEY_HEADERS[1],
    KEY_HEADERS[2],
];

/// The fixed, public key of digests when no secret is set.
fn public_key() -> [u8; 32] {
    blake3::derive_key("kiroku caller key digest v1", b"")
}

impl Default for CallerPolicy {
    /// API keys (`Authorization: Bearer`, `x-api-key`, `api-key`, `x-goog-api-key`) and client addresses
    /// are digested with a fixed public key. That is safe for random API keys, but not
    /// for addresses: anyone can hash every IPv4 address and look a digest up. Set
    /// [`key_digest_secret`](Self::key_digest_secret) to make both unlinkable to
    /// anyone without the secret, or drop addresses with
    /// [`no_client_addr`](Self::no_client_addr).
    fn default() -> Self {
        Self { subject_header: None, tenant_header: None, key: public_key(), key_digests: true, client_addrs: true }
    }
}

impl CallerPolicy {
    /// Take the subject from this header (set by an authenticating gateway). A header
    /// that carries credentials (`Authorization`, cookies, API-key headers) is recorded
    /// as its keyed digest, never as it is; the same holds for the tenant header.
    pub fn subject_header(mut self, name: HeaderName) -> Self {
        self.subject_header = Some(name);
        self
    }

    /// Take the tenant from this header.
    pub fn tenant_header(mut self, name: HeaderName) -> Self {
        self.tenant_header = Some(name);
        self
    }

    /// Digest API keys and client addresses with this secret (keyed blake3).
    pub fn key_digest_secret(mut self, key: [u8; 32]) -> Self {
        self.key = key;
        self.key_digests = true;
        self
    }

    /// The digest key made from secret material of any length (a file of random bytes,
    /// a passphrase): `blake3::derive_key("kiroku caller secret v1", material)`. Whoever
    /// holds the material can recompute a digest to check a suspected caller.
    pub fn secret_from(material: &[u8]) -> [u8; 32] {
        blake3::derive_key("kiroku caller secret v1", material)
    }

    /// Do not record client addresses at all.
    pub fn no_client_addr(mut self) -> Self {
        self.client_addrs = false;
        self
    }

    /// Do not derive a subject from API keys.
    pub fn no_key_digest(mut self) -> Self {
        self.key_digests = false;
        self
    }

    pub(crate) fn caller(&self, headers: &HeaderMap) -> Caller {
        // A header that carries credentials is never recorded as it is, even when it is
        // configured as the subject or tenant: its keyed digest stands in.
        let text = |h: &Option<HeaderName>| {
            let name = h.as_ref()?;
            let v = headers.get(name)?.to_str().ok()?;
            Some(if CREDENTIAL_HEADERS.contains(&name.as_str()) { self.digest(v)? } else { v.to_owned() })
        };
        let subject = text(&self.subject_header).or_else(|| {
            let secret = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
                .map(|(_, token)| token)
                .or_else(|| KEY_HEADERS.iter().find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok())))?;
            self.digest(secret)
        });
        Caller { subject, tenant: text(&self.tenant_header), client_addr: None }
    }

    /// `key:<keyed blake3>` of a credential; `None` when key digests are off.
    fn digest(&self, secret: &str) -> Option<String> {
        self.key_digests.then(|| keyed_digest("key", &self.key, secret.trim()))
    }

    /// What the record says of the client's address: its keyed digest, or nothing.
    pub(crate) fn client_addr(&self, ip: std::net::IpAddr) -> Option<String> {
        // One form per address: an IPv4 client seen over an IPv6 socket is that IPv4 address.
        self.client_addrs.then(|| keyed_digest("ip", &self.key, &ip.to_canonical().to_string()))
    }
}

/// `<kind>:<first 16 bytes of keyed blake3 of text, hex>`: how callers are recorded.
fn keyed_digest(kind: &str, key: &[u8; 32], text: &str) -> String {
    let d = blake3::keyed_hash(key, text.as_bytes());
    format!("{kind}:{}", to_hex(&d.as_bytes()[..16]))
}

/// A W3C `traceparent` header that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    /// The trace id.
    pub(crate) trace_id: [u8; 16],
    /// The caller's span (the parent of this inference's span).
    pub(crate) parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub(crate) flags: u8,
}

/// Read the W3C `traceparent` header (`<version>-<trace id>-<parent id>-<flags>`, lowercase
/// hex): `None` when absent or invalid (version `ff`, version `00` with more fields, an
/// all-zero trace or parent id). The one reading of the header, for the record and for
/// the telemetry span's parent alike.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (ver, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    if ver == "ff" || (ver == "00" && parts.next().is_some()) {
        return None;
    }
    let [_] = lower_hex::<1>(ver)?;
    let trace_id = lower_hex::<16>(trace).filter(|t| t != &[0; 16])?;
    let parent_id = lower_hex::<8>(parent).filter(|p| p != &[0; 8])?;
    let [flags] = lower_hex::<1>(flags)?;
    Some(TraceParent { trace_id, parent_id, flags })
}

/// `N` bytes written as exactly `2N` lowercase hex digits.
fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The record's trace context: the request's trace id (from `traceparent`) and
/// `span_id`, a new span for this inference; empty when the header is absent or invalid.
pub(crate) fn trace_context(headers: &HeaderMap, span_id: [u8; 8]) -> TraceContext {
    match traceparent(headers) {
        Some(tp) => TraceContext { trace_id: Some(to_hex(&tp.trace_id)), span_id: Some(to_hex(&span_id)) },
        None => TraceContext::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_digested_never_stored() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer sk-secret-123".parse().unwrap());
        let c = CallerPolicy::default().caller(&h);
        let s = c.subject.unwrap();
        assert!(s.starts_with("key:") && !s.contains("secret"));
        let c2 = CallerPolicy::default().key_digest_secret([1; 32]).caller(&h);
        assert_ne!(c2.subject.unwrap(), s);
        // The scheme is case-insensitive (RFC 9110); the same key, the same subject.
        for header in ["bearer sk-secret-123", "BEARER  sk-secret-123"] {
            h.insert(AUTHORIZATION, header.parse().unwrap());
            assert_eq!(CallerPolicy::default().caller(&h).subject.as_deref(), Some(s.as_str()), "{header}");
        }
        // The same key in any of the API-key headers.
        for name in KEY_HEADERS {
            let mut h = HeaderMap::new();
            h.insert(name, "sk-secret-123".parse().unwrap());
            assert_eq!(CallerPolicy::default().caller(&h).subject.as_deref(), Some(s.as_str()), "{name}");
        }
    }

    #[test]
    fn client_addresses_are_keyed_digests_or_dropped() {
        let v4: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let public = CallerPolicy::default();
        let a = public.client_addr(v4).unwrap();
        assert!(a.starts_with("ip:") && a.len() == 3 + 32 && !a.contains("192"));
        assert_eq!(public.client_addr(mapped), Some(a.clone()), "one address, one digest");
        let secret = CallerPolicy::default().key_digest_secret([7; 32]);
        assert_ne!(secret.client_addr(v4), Some(a), "a secret changes the digest");
        assert_eq!(CallerPolicy::default().no_client_addr().client_addr(v4), None);
        assert_eq!(CallerPolicy::default().no_client_addr().key_digest_secret([7; 32]).client_addr(v4), None);
    }

    #[test]
    fn a_credential_header_configured_as_subject_is_digested_not_recorded() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer sk-secret-123".parse().unwrap());
        h.insert("cookie", "session=COOKIE".parse().unwrap());
        let p = CallerPolicy::default().subject_header(AUTHORIZATION).tenant_header(HeaderName::from_static("cookie"));
        let c = p.caller(&h);
        let (subject, tenant) = (c.subject.unwrap(), c.tenant.unwrap());
        assert!(subject.starts_with("key:") && !subject.contains("secret"), "{subject}");
        assert!(tenant.starts_with("key:") && !tenant.contains("COOKIE"), "{tenant}");
        // With key digests off, nothing at all.
        assert_eq!(p.no_key_digest().caller(&h).subject, None);
    }

    #[test]
    fn subject_header_wins() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        let c = CallerPolicy::default().subject_header(HeaderName::from_static("x-user")).caller(&h);
        assert_eq!(c.subject.as_deref(), Some("alice"));
    }

    #[test]
    fn traceparent() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let t = trace_context(&h, [1; 8]);
        assert_eq!(t.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(t.span_id.as_deref(), Some("0101010101010101"));
        // The parent and flags, for the telemetry span.
        let tp = super::traceparent(&h).unwrap();
        assert_eq!(tp.parent_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!((tp.trace_id[0], tp.trace_id[15], tp.flags), (0x4b, 0x36, 1));
        // Invalid per W3C Trace Context: ignored, never half-read.
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert!(trace_context(&h, [1; 8]).is_empty(), "{bad}");
        }
        // A later version may carry more fields.
        h.insert("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future".parse().unwrap());
        assert_eq!(trace_context(&h, [1; 8]).trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
