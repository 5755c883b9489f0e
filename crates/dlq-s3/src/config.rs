//! [`S3Config`]: where the store lives, from `s3://BUCKET/PREFIX?endpoint=URL&region=R`.

use dlq_core::store::StoreError;

/// Commits between two snapshots of the store's state, by default.
pub const fn default_snapshot_every() -> u64 {
    64
}

/// Where an S3 store lives and how it is reached.
///
/// Credentials are never part of it: the client takes them from the
/// standard AWS chain (environment, shared profile, SSO, instance role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The key prefix every object of the store is under, without a leading
    /// or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:19380` for S3Proxy);
    /// `None` for AWS. With an endpoint, requests use path-style addressing.
    pub endpoint: Option<String>,
    /// The region; `None` takes the chain's (`AWS_REGION`, profile), and
    /// `us-east-1` where an endpoint is given and the chain names none.
    pub region: Option<String>,
    /// A snapshot of the state is written every this many commits, so that
    /// opening the store reads one snapshot and a short log tail.
    pub snapshot_every: u64,
}

impl S3Config {
    /// A store at the root of `bucket`, on AWS.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            snapshot_every: default_snapshot_every(),
        }
    }

    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&snapshot_every=N]`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] naming every problem found: another
    /// scheme, a missing or invalid bucket name, credentials in the URL,
    /// an unknown or repeated parameter, a bad value.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("an S3 store URL starts with s3://".into()))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        let mut problems = Vec::new();
        if bucket.contains('@') {
            // Never echo what came before the `@`: it may be a secret.
            return Err(StoreError::InvalidUrl {
                url: "s3://***@…".into(),
                reason: "credentials do not go in the store URL; dlq takes them from the \
                         AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, …)"
                    .into(),
            });
        }
        if let Err(reason) = check_bucket(bucket) {
            problems.push(reason);
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if prefix.split('/').any(|part| part == "." || part == "..") {
            problems.push(format!("prefix {prefix:?} has a . or .. segment"));
        }
        let mut config = S3Config::new(bucket);
        config.prefix = prefix;
        let mut seen = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&name) {
                problems.push(format!("parameter {name:?} given twice"));
                continue;
            }
            seen.push(name);
            let value = match percent_decode(value) {
                Some(v) => v,
                None => {
                    problems.push(format!("parameter {name:?}: bad %-escape"));
                    continue;
                }
            };
            match name {
                "endpoint" => match check_endpoint(&value) {
                    Ok(()) => config.endpoint = Some(value),
                    Err(reason) => problems.push(reason),
                },
                "region" if !value.is_empty() => config.region = Some(value),
                "region" => problems.push("region is empty".into()),
                "snapshot_every" => match value.parse::<u64>() {
                    Ok(n) if n > 0 => config.snapshot_every = n,
                    _ => problems.push(format!(
                        "snapshot_every {value:?} is not a positive number of commits"
                    )),
                },
                other => problems.push(format!(
                    "unknown parameter {other:?} (known: endpoint, region, snapshot_every)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems.join("; ")))
        }
    }

    /// The URL this config reads from (without defaults), for messages.
    pub fn url(&self) -> String {
        let mut url = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            url.push('/');
            url.push_str(&self.prefix);
        }
        let mut params = Vec::new();
        if let Some(e) = &self.endpoint {
            params.push(format!("endpoint={e}"));
        }
        if let Some(r) = &self.region {
            params.push(format!("region={r}"));
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        url
    }
}

/// S3's bucket naming rules (the general purpose ones).
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket: s3://BUCKET/PREFIX".into());
    }
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(f, l)| f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ok_ends || bucket.contains("..") {
        return Err(format!(
            "bucket {bucket:?} is not a valid S3 bucket name (3 to 63 lowercase letters, \
             digits, dots and hyphens, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('@') => Ok(()),
        Some(host) if host.contains('@') => {
            Err("the endpoint must not hold credentials (use the AWS environment)".into())
        }
        _ => Err(format!(
            "endpoint {endpoint:?} is not an http:// or https:// URL"
        )),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_bucket_prefix_endpoint_and_region() {
        let c = S3Config::from_url(
            "s3://dlq-archive/teams/rss/?endpoint=http://127.0.0.1:19380&region=eu-west-1",
        )
        .expect("valid");
        assert_eq!(c.bucket, "dlq-archive");
        assert_eq!(c.prefix, "teams/rss");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:19380"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.snapshot_every, default_snapshot_every());
        let root = S3Config::from_url("s3://dlq-archive").expect("valid");
        assert_eq!((root.prefix.as_str(), root.endpoint), ("", None));
    }

    #[test]
    fn every_problem_of_a_url_is_reported_at_once() {
        let err = S3Config::from_url("s3://Bad_Bucket/p?region=&colour=red&snapshot_every=0")
            .expect_err("invalid")
            .to_string();
        for part in [
            "Bad_Bucket",
            "region is empty",
            "\"colour\"",
            "snapshot_every",
        ] {
            assert!(err.contains(part), "{part} missing from {err}");
        }
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_being_echoed() {
        let err = S3Config::from_url("s3://AKIAEXAMPLE:hunter2@bucket/p")
            .expect_err("refused")
            .to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("AKIAEXAMPLE"),
            "{err}"
        );
        assert!(err.contains("credentials"), "{err}");
        let err = S3Config::from_url("s3://bucket?endpoint=http://user:pw@host:1")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("must not hold credentials"), "{err}");
    }

    #[test]
    fn other_schemes_and_bad_endpoints_are_refused() {
        assert!(S3Config::from_url("kafka://b").is_err());
        assert!(S3Config::from_url("s3://bucket?endpoint=127.0.0.1:9000").is_err());
        assert!(S3Config::from_url("s3://bucket/a/../b").is_err());
        assert!(S3Config::from_url("s3://bucket?region=a&region=b").is_err());
    }
}
