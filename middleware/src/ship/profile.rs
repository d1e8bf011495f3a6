//! AWS shared configuration files (`~/.aws/credentials`, `~/.aws/config`) for the
//! settings the environment does not give: the standard profile lookup the AWS SDKs and
//! CLI do, limited to static keys, region and endpoint (instance, container and web
//! identity credentials are resolved by `object_store` itself).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings of one profile that matter for S3.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

/// Sections of an INI file: name -> key -> value (keys lowercased).
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            continue;
        }
        if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

fn home_file(env: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join(default))
}

impl Profile {
    /// The profile named by `AWS_PROFILE` (or `default`), from the files named by
    /// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` (or `~/.aws/...`). Missing
    /// files give an empty profile.
    pub(crate) fn from_files() -> Self {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        Self::from_texts(
            &name,
            &read(home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
            &read(home_file("AWS_CONFIG_FILE", "config")),
        )
    }

    /// The profile `name` from the text of a credentials file and a config file (where
    /// sections other than `default` are written `[profile NAME]`).
    pub(crate) fn from_texts(name: &str, credentials: &str, config: &str) -> Self {
        let creds = parse_ini(credentials);
        let conf = parse_ini(config);
        let conf_section = if name == "default" { "default".to_owned() } else { format!("profile {name}") };
        let pick = |key: &str| {
            creds
                .get(name)
                .and_then(|s| s.get(key))
                .or_else(|| conf.get(&conf_section).and_then(|s| s.get(key)))
                .cloned()
        };
        Self {
            access_key_id: pick("aws_access_key_id"),
            secret_access_key: pick("aws_secret_access_key"),
            session_token: pick("aws_session_token"),
            region: pick("region"),
            endpoint_url: pick("endpoint_url"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_reads_credentials_then_config() {
        let creds = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[audit]\naws_access_key_id=AKAUDIT\naws_secret_access_key=s2\n";
        let conf = "[default]\nregion = ap-northeast-1\n[profile audit]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:9000\n";
        let d = Profile::from_texts("default", creds, conf);
        assert_eq!(d.access_key_id.as_deref(), Some("AKDEFAULT"));
        assert_eq!(d.region.as_deref(), Some("ap-northeast-1"));
        assert_eq!(d.endpoint_url, None);
        let a = Profile::from_texts("audit", creds, conf);
        assert_eq!(a.access_key_id.as_deref(), Some("AKAUDIT"));
        assert_eq!(a.secret_access_key.as_deref(), Some("s2"));
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(a.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(Profile::from_texts("missing", creds, conf), Profile::default());
    }
}
