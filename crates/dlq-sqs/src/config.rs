//! `sqs://REGION?endpoint=URL&state=PATH&prefix=P&lease=SECONDS`: what the
//! store URL says, and how DLQ names map to SQS queue names.

use dlq_core::store::StoreError;
use std::path::PathBuf;

/// The default visibility lease of a read, in seconds: long enough for one
/// pass over a DLQ of a few thousand messages, short enough that a reader
/// killed mid-pass hides nothing for long.
pub const fn default_lease_secs() -> i32 {
    30
}

/// The default path of the local index (statuses and a copy of every
/// message read), relative to the working directory.
pub fn default_state() -> PathBuf {
    PathBuf::from("dlq-sqs.db")
}

/// Where message bodies over SQS's 256 KiB limit go (claim checks, in the
/// format of the Amazon SQS Extended Client): `claims=s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsConfig {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The key prefix of the objects, without a trailing `/` (may be empty).
    pub prefix: String,
}

/// How to reach SQS and where the store keeps its local index.
///
/// Credentials are never part of it: they come from the standard AWS chain
/// (environment variables, the shared config and credentials files, a
/// profile, instance or container roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsConfig {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Another endpoint than AWS's (ElasticMQ, LocalStack), e.g.
    /// `http://127.0.0.1:19324`.
    pub endpoint: Option<String>,
    /// The local index: an SQLite file with each record's status and a copy
    /// of every message read (default `dlq-sqs.db`).
    pub state: PathBuf,
    /// Only queues whose names start with this are discovered as DLQs
    /// (`ListQueues`' `QueueNamePrefix`).
    pub prefix: Option<String>,
    /// Seconds a read hides the messages it reads from other readers
    /// (1..=43200); they are released as soon as the read ends.
    pub lease_secs: i32,
    /// Where bodies over SQS's limit are written (`claims=s3://BUCKET/PREFIX`);
    /// without it such a record is refused.
    pub claims: Option<ClaimsConfig>,
    /// Another S3 endpoint than AWS's (`s3_endpoint=URL`, S3Proxy or
    /// MinIO), for writing claim checks and reading any message's
    /// (path-style requests, checksums only where required).
    pub s3_endpoint: Option<String>,
}

impl SqsConfig {
    /// A config for `region` with every default.
    pub fn new(region: impl Into<String>) -> SqsConfig {
        SqsConfig {
            region: region.into(),
            endpoint: None,
            state: default_state(),
            prefix: None,
            lease_secs: default_lease_secs(),
            claims: None,
            s3_endpoint: None,
        }
    }

    /// Parses `sqs://REGION?endpoint=URL&state=PATH&prefix=P&lease=SECONDS`
    /// (every parameter optional). Every problem is reported at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] naming each problem.
    pub fn from_url(url: &str) -> Result<SqsConfig, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let rest = url
            .strip_prefix("sqs://")
            .ok_or_else(|| invalid("an SQS store URL starts with sqs://".into()))?;
        let (region, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = region.trim_end_matches('/');
        let mut problems = Vec::new();
        if region.is_empty() {
            problems.push("no region: write sqs://REGION, e.g. sqs://eu-west-1".to_owned());
        } else if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!(
                "region {region:?} is not an AWS region name (like eu-west-1)"
            ));
        }
        let mut config = SqsConfig::new(region);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "endpoint" => {
                    if value.starts_with("http://") || value.starts_with("https://") {
                        config.endpoint = Some(value.to_owned());
                    } else {
                        problems.push(format!(
                            "endpoint {value:?} is not an http:// or https:// URL"
                        ));
                    }
                }
                "state" if !value.is_empty() => config.state = PathBuf::from(value),
                "state" => problems.push("state= needs a file path".into()),
                "prefix" => config.prefix = Some(value.to_owned()).filter(|p| !p.is_empty()),
                "lease" => match value.parse::<i32>() {
                    Ok(secs) if (1..=43_200).contains(&secs) => config.lease_secs = secs,
                    _ => problems.push(format!(
                        "lease {value:?} must be a number of seconds from 1 to 43200"
                    )),
                },
                "claims" => match parse_claims(value) {
                    Ok(c) => config.claims = Some(c),
                    Err(p) => problems.push(p),
                },
                "s3_endpoint" => {
                    if value.starts_with("http://") || value.starts_with("https://") {
                        config.s3_endpoint = Some(value.to_owned());
                    } else {
                        problems.push(format!(
                            "s3_endpoint {value:?} is not an http:// or https:// URL"
                        ));
                    }
                }
                k if is_credential_key(k) => problems.push(format!(
                    "{k} does not belong in a store URL: credentials come from the standard \
                     AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, roles)"
                )),
                k => problems.push(format!(
                    "unknown parameter {k:?} (known: endpoint, state, prefix, lease, claims, \
                     s3_endpoint)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems.join("; ")))
        }
    }
}

/// `s3://BUCKET[/PREFIX]` of `claims=`.
fn parse_claims(value: &str) -> Result<ClaimsConfig, String> {
    let bad = || {
        format!(
            "claims {value:?} is not s3://BUCKET[/PREFIX] (a bucket for bodies over SQS's \
             256 KiB limit)"
        )
    };
    let rest = value.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket || bucket.contains('@') {
        return Err(bad());
    }
    Ok(ClaimsConfig {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
    })
}

/// `url` with the value of every parameter that looks like a credential
/// replaced by `***`, to show in errors and logs (such a URL is refused,
/// but the refusal must not print the secret).
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_credential_key(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential"]
        .iter()
        .any(|w| k.contains(w))
}

/// The SQS queue that holds DLQ `dlq`: dots become dashes (SQS names allow
/// only letters, digits, `-` and `_`), except a final `.fifo`, which marks a
/// FIFO queue. `dlq.rss.events` → `dlq-rss-events`; a name that is already
/// a queue name stays as it is.
///
/// # Errors
///
/// [`StoreError::Backend`] (not retryable) for a name no queue can have.
pub fn queue_name(dlq: &str) -> Result<String, StoreError> {
    let (stem, fifo) = match dlq.strip_suffix(".fifo") {
        Some(stem) => (stem, ".fifo"),
        None => (dlq, ""),
    };
    let name = format!("{}{fifo}", stem.replace('.', "-"));
    let valid_chars = stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if stem.is_empty() || !valid_chars || name.len() > 80 {
        return Err(StoreError::Backend {
            backend: "sqs",
            message: format!(
                "DLQ name {dlq:?} maps to no SQS queue name: use 1 to 80 letters, digits, \
                 '-', '_' or '.' (dots become dashes; a final .fifo names a FIFO queue)"
            ),
            retryable: false,
        });
    }
    Ok(name)
}

/// The queue name at the end of an SQS queue ARN
/// (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
pub fn queue_of_arn(arn: &str) -> Option<&str> {
    let name = arn.rsplit(':').next()?;
    (arn.starts_with("arn:") && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_region_endpoint_state_prefix_and_lease() {
        let c = SqsConfig::from_url(
            "sqs://eu-west-1?endpoint=http://127.0.0.1:19324&state=/tmp/i.db&prefix=dlq-&lease=5",
        )
        .expect("valid");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:19324"));
        assert_eq!(c.state, PathBuf::from("/tmp/i.db"));
        assert_eq!(c.prefix.as_deref(), Some("dlq-"));
        assert_eq!(c.lease_secs, 5);
        let d = SqsConfig::from_url("sqs://us-east-1").expect("defaults");
        assert_eq!(d, SqsConfig::new("us-east-1"));
    }

    #[test]
    fn every_problem_of_a_url_is_reported_and_credentials_are_refused() {
        let err =
            SqsConfig::from_url("sqs://?endpoint=ftp://x&lease=0&secret_key=s3cr3t&color=red")
                .expect_err("invalid")
                .to_string();
        for part in [
            "no region",
            "ftp://x",
            "lease \"0\"",
            "standard AWS chain",
            "color",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err}");
        }
        assert!(
            !err.contains("s3cr3t=") || err.contains("secret_key"),
            "{err}"
        );
        assert!(SqsConfig::from_url("kafka://x").is_err());
    }

    #[test]
    fn claims_name_a_bucket_and_prefix_and_bad_ones_are_refused() {
        let c = SqsConfig::from_url(
            "sqs://us-east-1?claims=s3://dlq-claims/big/ones/&s3_endpoint=http://127.0.0.1:19380",
        )
        .expect("valid");
        assert_eq!(
            c.claims,
            Some(ClaimsConfig {
                bucket: "dlq-claims".into(),
                prefix: "big/ones".into()
            })
        );
        assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:19380"));
        let err = SqsConfig::from_url("sqs://us-east-1?claims=dlq-claims&s3_endpoint=x")
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("s3://BUCKET") && err.contains("s3_endpoint"),
            "{err}"
        );
    }

    #[test]
    fn dlq_names_map_to_queue_names_keeping_a_fifo_suffix() {
        assert_eq!(queue_name("dlq.rss.events").expect("ok"), "dlq-rss-events");
        assert_eq!(queue_name("orders-dlq").expect("ok"), "orders-dlq");
        assert_eq!(
            queue_name("dlq.orders.fifo").expect("ok"),
            "dlq-orders.fifo"
        );
        assert!(queue_name("bad name").is_err());
        assert!(queue_name("").is_err());
        assert!(queue_name(&"x".repeat(81)).is_err());
    }

    #[test]
    fn the_queue_of_an_arn_is_its_last_part() {
        assert_eq!(
            queue_of_arn("arn:aws:sqs:us-east-1:000000000000:orders"),
            Some("orders")
        );
        assert_eq!(queue_of_arn("orders"), None);
    }
}
