//! [`KafkaConfig`]: where the broker is, how to reach it, and how the store
//! lays out its topics; the `kafka://` URL and the `DLQ_KAFKA_*` environment.
//!
//! Layers, lowest to highest: the defaults below, a config file (any serde
//! format, e.g. the JSON in the example), the environment, then the URL (a
//! command that names its cluster in `--store kafka://…` is not redirected by
//! a stray `DLQ_KAFKA_BOOTSTRAP`). [`KafkaConfig::resolve`] applies the
//! environment to a file's configuration, loads the SASL password and checks
//! everything, reporting every problem at once.
//!
//! # Secrets
//!
//! The SASL password never comes from an argument, a URL or the options map
//! (those end up in shell history, process lists and logs): it is read from
//! `DLQ_KAFKA_SASL_PASSWORD`, or from the file named by `sasl_password_file`
//! (or `DLQ_KAFKA_SASL_PASSWORD_FILE`). It is held in a [`Secret`], whose
//! `Debug` and `Display` print `***`, and errors built from client messages
//! have every secret value replaced by `***`.
//!
//! # Example config file
//!
//! ```
//! let config: dlq_kafka::KafkaConfig = serde_json::from_str(r#"{
//!     "bootstrap_servers": "broker-1:9093,broker-2:9093",
//!     "options": {
//!         "security.protocol": "SASL_SSL",
//!         "sasl.mechanism": "SCRAM-SHA-512",
//!         "sasl.username": "dlq",
//!         "ssl.ca.location": "/etc/kafka/ca.pem"
//!     },
//!     "sasl_password_file": "/run/secrets/kafka-password",
//!     "dlq_prefix": "dlq.",
//!     "ledger_topic": "dlq.ledger",
//!     "blob_topic": "dlq.blobs",
//!     "format": "envelope",
//!     "retention_ms": 1209600000,
//!     "replication_factor": 3
//! }"#)?;
//! assert_eq!(config.timeout_ms, 30_000, "defaults fill the rest");
//! # Ok::<(), serde_json::Error>(())
//! ```

use dlq_core::envelope::EncodeOptions;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variable holding the SASL password.
pub const PASSWORD_ENV: &str = "DLQ_KAFKA_SASL_PASSWORD";
/// Environment variable naming a file that holds the SASL password.
pub const PASSWORD_FILE_ENV: &str = "DLQ_KAFKA_SASL_PASSWORD_FILE";
/// The `DLQ_KAFKA_*` variables of an environment.
fn env_map(env: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    env.into_iter()
        .filter(|(k, _)| k.starts_with("DLQ_KAFKA_"))
        .collect()
}

/// Prefix of environment variables that set librdkafka options:
/// `DLQ_KAFKA_OPTION_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`.
pub const OPTION_ENV_PREFIX: &str = "DLQ_KAFKA_OPTION_";

/// How DLQ records are written to their topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The v1 JSON envelope as the value (the default): self-describing,
    /// readable by consumers of the seed format (`record["error"]`).
    #[default]
    Envelope,
    /// The original value unchanged, metadata in `dlq.*` headers (as Kafka
    /// Connect and Spring do), for consumers that need the raw value. A
    /// record too large for one message falls back to the envelope with
    /// claim checks; readers decode both.
    Headers,
}

impl Format {
    fn parse(text: &str) -> Option<Format> {
        match text {
            "envelope" => Some(Format::Envelope),
            "headers" => Some(Format::Headers),
            _ => None,
        }
    }
}

pub use dlq_core::secret::Secret;

/// The configuration of a [`KafkaStore`](crate::KafkaStore).
///
/// `Debug` is written by hand: it prints `***` for the password and for
/// options whose name looks secret (`*password*`, `*secret*`, `ssl.key.pem`,
/// …).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// librdkafka client options passed through to every client the store
    /// creates: `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`, `client.id`, …. Options the store manages itself
    /// (`bootstrap.servers`, `transactional.id`, `enable.idempotence`,
    /// `isolation.level`, `group.id`, …) and `sasl.password` are rejected.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// A file holding the SASL password (trailing newline ignored).
    /// `DLQ_KAFKA_SASL_PASSWORD` takes precedence.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Topics whose name starts with this are DLQs (`dlq.rss.events`).
    /// Appends to a DLQ name without it are refused. Default `dlq.`.
    #[serde(default = "default_dlq_prefix")]
    pub dlq_prefix: String,
    /// The compacted ledger topic: record outcomes, checkpoints and blob
    /// locations. Default `dlq.ledger`.
    #[serde(default = "default_ledger_topic")]
    pub ledger_topic: String,
    /// The compacted topic holding claim-check blobs in chunks. Default
    /// `dlq.blobs`.
    #[serde(default = "default_blob_topic")]
    pub blob_topic: String,
    /// How records are written: `envelope` (default) or `headers`.
    #[serde(default)]
    pub format: Format,
    /// `retention.ms` of DLQ topics the store creates (`-1`: forever).
    /// Default: the broker's default. Existing topics are not changed.
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// Partitions of a DLQ topic the store creates when its source topic
    /// does not exist (else the source topic's count is used). Default 1.
    #[serde(default = "default_partitions")]
    pub default_partitions: i32,
    /// Replication factor of topics the store creates. Default: the
    /// broker's `default.replication.factor` (1 suits a single-node broker).
    #[serde(default)]
    pub replication_factor: Option<i16>,
    /// The largest Kafka record the store writes (value, key and headers),
    /// which must not exceed the topics' `max.message.bytes`. Envelopes are
    /// bounded to fit; larger payloads go to claim-check blobs in chunks
    /// below it. Default 1 MiB, the broker's default.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long one broker operation (metadata, a read, a commit) may take
    /// before it fails with a retryable error. Default 30 s.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Commit each batch in one Kafka transaction (default `true`). Without
    /// transactions a failed commit can leave part of a batch written;
    /// retrying it is safe (appends are deduplicated by id) but readers may
    /// see the part in between.
    #[serde(default = "default_transactions")]
    pub transactions: bool,
    /// How many of the last records of each DLQ partition an append
    /// checks its id against (deduplication without every id in memory;
    /// see docs/store-contract.md). Idempotent and transactional writers
    /// prevent most duplicates; this catches an at-least-once writer that
    /// writes a dead letter again after a crash, which lands close behind
    /// the first copy.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// The producer's `transactional.id`. Default: `dlq-kafka-<random>`,
    /// unique per store so that concurrent stores never fence each other.
    /// Give a stable id to a long-running service so that a restarted
    /// instance fences its predecessor's unfinished transaction at once.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// The SASL password, from the environment or the password file only.
    #[serde(skip)]
    sasl_password: Option<Secret>,
}

/// Default of [`KafkaConfig::default_partitions`].
pub const fn default_partitions() -> i32 {
    1
}

/// Default of [`KafkaConfig::max_message_bytes`]: 1 MiB.
pub const fn default_max_message_bytes() -> usize {
    1024 * 1024
}

/// Default of [`KafkaConfig::timeout_ms`]: 30 s.
pub const fn default_timeout_ms() -> u64 {
    30_000
}

/// Default of [`KafkaConfig::dedup_window`].
pub const fn default_dedup_window() -> usize {
    10_000
}

/// Default of [`KafkaConfig::transactions`].
pub const fn default_transactions() -> bool {
    true
}

/// Default of [`KafkaConfig::dlq_prefix`] (not `const`: it is a `String`).
pub fn default_dlq_prefix() -> String {
    "dlq.".into()
}

/// Default of [`KafkaConfig::ledger_topic`].
pub fn default_ledger_topic() -> String {
    "dlq.ledger".into()
}

/// Default of [`KafkaConfig::blob_topic`].
pub fn default_blob_topic() -> String {
    "dlq.blobs".into()
}

/// The smallest [`KafkaConfig::max_message_bytes`]: an envelope of
/// [`EncodeOptions::MIN_MAX_BYTES`] plus room for a key and record framing.
pub const MIN_MAX_MESSAGE_BYTES: usize = EncodeOptions::MIN_MAX_BYTES + 4096;

/// librdkafka options the store sets itself; a user value would break its
/// guarantees (or, for `sasl.password`, leak a secret).
const MANAGED_OPTIONS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "use bootstrap_servers (the URL's host list)",
    ),
    (
        "metadata.broker.list",
        "use bootstrap_servers (the URL's host list)",
    ),
    ("transactional.id", "use transactional_id"),
    (
        "enable.idempotence",
        "the store always produces idempotently",
    ),
    ("acks", "the store always uses acks=all"),
    ("isolation.level", "the store always reads read_committed"),
    ("group.id", "the store uses no consumer group"),
    ("enable.auto.commit", "the store uses no consumer group"),
    ("message.max.bytes", "use max_message_bytes"),
];

/// Options whose values are secret: masked in `Debug` and in errors.
pub(crate) fn is_secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("token")
        || n == "ssl.key.pem"
        || n == "ssl_key"
        || n == "sasl.oauthbearer.config"
}

/// The configuration could not be used; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Kafka store configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// Each problem, in words a user can act on.
    pub problems: Vec<String>,
}

/// Whether `name` is a legal Kafka topic name.
pub(crate) fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaConfig {
    /// A configuration with every default, for these brokers.
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            options: BTreeMap::new(),
            sasl_password_file: None,
            dlq_prefix: default_dlq_prefix(),
            ledger_topic: default_ledger_topic(),
            blob_topic: default_blob_topic(),
            format: Format::default(),
            retention_ms: None,
            default_partitions: default_partitions(),
            replication_factor: None,
            max_message_bytes: default_max_message_bytes(),
            timeout_ms: default_timeout_ms(),
            transactions: default_transactions(),
            dedup_window: default_dedup_window(),
            transactional_id: None,
            sasl_password: None,
        }
    }

    /// Parses a store URL, applies the `DLQ_KAFKA_*` environment and loads
    /// the password: `kafka://HOST:PORT[,HOST:PORT…][?PARAM=VALUE&…]`.
    ///
    /// Parameters: `dlq_prefix`, `ledger`, `blobs`, `format`
    /// (`envelope`|`headers`), `retention_ms`, `partitions`,
    /// `replication_factor`, `max_message_bytes`, `timeout_ms`,
    /// `transactions` (`true`|`false`), `transactional_id`,
    /// `dedup_window`; any name with a
    /// dot is a librdkafka option (`security.protocol=SASL_SSL`). Values
    /// may be percent-encoded. Credentials in the URL are refused.
    pub fn from_url(url: &str) -> Result<KafkaConfig, ConfigError> {
        KafkaConfig::from_url_with_env(url, process_env())
    }

    /// [`KafkaConfig::from_url`] with an explicit environment (name, value
    /// pairs; for tests).
    pub fn from_url_with_env(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KafkaConfig, ConfigError> {
        let mut problems = Vec::new();
        let Some(rest) = url.strip_prefix("kafka://") else {
            return Err(ConfigError {
                problems: vec!["the store URL must start with kafka://".into()],
            });
        };
        let (hosts, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let hosts = hosts.trim_end_matches('/');
        let hosts = match hosts.rsplit_once('@') {
            Some((_, h)) => {
                problems.push(
                    "the URL must not carry credentials: put the user name in \
                     ?sasl.username=NAME and the password in DLQ_KAFKA_SASL_PASSWORD \
                     or a sasl_password_file"
                        .into(),
                );
                h
            }
            None => hosts,
        };
        // The environment first, then the URL: what the URL says wins, the
        // environment fills in the rest (a deployment's DLQ_KAFKA_* must not
        // silently redirect a command that names its cluster).
        let env = env_map(env);
        let mut config = KafkaConfig::new("");
        config.apply_environment(&env, &mut problems);
        if !hosts.is_empty() {
            config.bootstrap_servers = hosts.to_owned();
        }
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(value) = percent_decode(value) else {
                problems.push(format!("parameter {name:?}: invalid percent-encoding"));
                continue;
            };
            config.set(name, &value, "URL parameter", &mut problems);
        }
        config.finish(&env, problems)
    }

    /// Applies the `DLQ_KAFKA_*` environment, loads the SASL password and
    /// checks the whole configuration. Call it on a configuration read from
    /// a file before opening a store.
    pub fn resolve(self) -> Result<KafkaConfig, ConfigError> {
        self.resolve_with(process_env())
    }

    /// [`KafkaConfig::resolve`] with an explicit environment (name, value
    /// pairs; for tests). It reads the variables listed under
    /// [`KafkaConfig::from_url`]'s environment and every
    /// `DLQ_KAFKA_OPTION_*`; others are ignored. Here the environment
    /// overrides the configuration (a file's), unlike a URL's parameters.
    pub fn resolve_with(
        mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KafkaConfig, ConfigError> {
        let env = env_map(env);
        let mut problems = Vec::new();
        self.apply_environment(&env, &mut problems);
        self.finish(&env, problems)
    }

    /// The `DLQ_KAFKA_*` settings and `DLQ_KAFKA_OPTION_*` client options.
    fn apply_environment(&mut self, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
        let get = |name: &str| env.get(name).cloned();
        self.apply_env(&get, problems);
        for (k, v) in env.range(OPTION_ENV_PREFIX.to_owned()..) {
            let Some(rest) = k.strip_prefix(OPTION_ENV_PREFIX) else {
                break;
            };
            let name = rest.to_ascii_lowercase().replace('_', ".");
            self.set_option(&name, v, k, problems);
        }
    }

    /// Loads the password and checks the whole configuration.
    fn finish(
        mut self,
        env: &BTreeMap<String, String>,
        mut problems: Vec<String>,
    ) -> Result<KafkaConfig, ConfigError> {
        let get = |name: &str| env.get(name).cloned();
        self.load_password(&get, &mut problems);
        self.check(&mut problems);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Overrides from the environment: `DLQ_KAFKA_BOOTSTRAP`,
    /// `DLQ_KAFKA_DLQ_PREFIX`, `DLQ_KAFKA_LEDGER`, `DLQ_KAFKA_BLOBS`,
    /// `DLQ_KAFKA_FORMAT`, `DLQ_KAFKA_RETENTION_MS`, `DLQ_KAFKA_PARTITIONS`,
    /// `DLQ_KAFKA_REPLICATION_FACTOR`, `DLQ_KAFKA_MAX_MESSAGE_BYTES`,
    /// `DLQ_KAFKA_TIMEOUT_MS`, `DLQ_KAFKA_TRANSACTIONS`,
    /// `DLQ_KAFKA_TRANSACTIONAL_ID`, `DLQ_KAFKA_SCAN_CACHE_BYTES`,
    /// `DLQ_KAFKA_SASL_PASSWORD_FILE`. Other
    /// `DLQ_KAFKA_*` variables (the broker script's) are ignored.
    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) {
        const VARS: &[(&str, &str)] = &[
            ("DLQ_KAFKA_BOOTSTRAP", "bootstrap"),
            ("DLQ_KAFKA_DLQ_PREFIX", "dlq_prefix"),
            ("DLQ_KAFKA_LEDGER", "ledger"),
            ("DLQ_KAFKA_BLOBS", "blobs"),
            ("DLQ_KAFKA_FORMAT", "format"),
            ("DLQ_KAFKA_RETENTION_MS", "retention_ms"),
            ("DLQ_KAFKA_PARTITIONS", "partitions"),
            ("DLQ_KAFKA_REPLICATION_FACTOR", "replication_factor"),
            ("DLQ_KAFKA_MAX_MESSAGE_BYTES", "max_message_bytes"),
            ("DLQ_KAFKA_TIMEOUT_MS", "timeout_ms"),
            ("DLQ_KAFKA_TRANSACTIONS", "transactions"),
            ("DLQ_KAFKA_TRANSACTIONAL_ID", "transactional_id"),
            ("DLQ_KAFKA_DEDUP_WINDOW", "dedup_window"),
        ];
        for (var, name) in VARS {
            if let Some(value) = env(var) {
                self.set(name, &value, var, problems);
            }
        }
        if let Some(path) = env(PASSWORD_FILE_ENV) {
            self.sasl_password_file = Some(PathBuf::from(path));
        }
    }

    /// Sets one named parameter (URL query or environment).
    fn set(&mut self, name: &str, value: &str, from: &str, problems: &mut Vec<String>) {
        fn num<T: std::str::FromStr>(
            name: &str,
            value: &str,
            from: &str,
            what: &str,
            problems: &mut Vec<String>,
        ) -> Option<T> {
            let parsed = value.trim().parse().ok();
            if parsed.is_none() {
                problems.push(format!("{from} {name}={value:?} is not {what}"));
            }
            parsed
        }
        match name {
            "bootstrap" => self.bootstrap_servers = value.to_owned(),
            "dlq_prefix" => self.dlq_prefix = value.to_owned(),
            "ledger" => self.ledger_topic = value.to_owned(),
            "blobs" => self.blob_topic = value.to_owned(),
            "format" => match Format::parse(value) {
                Some(f) => self.format = f,
                None => problems.push(format!(
                    "{from} format={value:?} is not a format (envelope or headers)"
                )),
            },
            "retention_ms" => {
                if let Some(v) = num(name, value, from, "a number of milliseconds", problems) {
                    self.retention_ms = Some(v);
                }
            }
            "partitions" => {
                if let Some(v) = num(name, value, from, "a partition count", problems) {
                    self.default_partitions = v;
                }
            }
            "replication_factor" => {
                if let Some(v) = num(name, value, from, "a replication factor", problems) {
                    self.replication_factor = Some(v);
                }
            }
            "max_message_bytes" => {
                if let Some(v) = num(name, value, from, "a number of bytes", problems) {
                    self.max_message_bytes = v;
                }
            }
            "timeout_ms" => {
                if let Some(v) = num(name, value, from, "a number of milliseconds", problems) {
                    self.timeout_ms = v;
                }
            }
            "transactions" => match value {
                "true" | "1" => self.transactions = true,
                "false" | "0" => self.transactions = false,
                _ => problems.push(format!(
                    "{from} transactions={value:?} is not true or false"
                )),
            },
            "transactional_id" => self.transactional_id = Some(value.to_owned()),
            "dedup_window" => {
                if let Some(v) = num(name, value, from, "a number of records", problems) {
                    if v == 0 {
                        problems.push(format!("{from} dedup_window: must be at least 1"));
                    } else {
                        self.dedup_window = v;
                    }
                }
            }
            // Scans stream since the per-record index is gone: accepted so
            // that URLs written for earlier versions keep working.
            "scan_cache_bytes" => {}
            option if option.contains('.') => self.set_option(option, value, from, problems),
            other => problems.push(format!(
                "unknown {from} {other:?} (known: dlq_prefix, ledger, blobs, format, \
                 retention_ms, partitions, replication_factor, max_message_bytes, timeout_ms, \
                 transactions, transactional_id, dedup_window, or a librdkafka option \
                 with a dot such as security.protocol)"
            )),
        }
    }

    fn set_option(&mut self, name: &str, value: &str, from: &str, problems: &mut Vec<String>) {
        if name == "sasl.password" {
            // Never echo the value.
            problems.push(format!(
                "{from} sets sasl.password: the SASL password is only read from the \
                 environment variable {PASSWORD_ENV} or from a file named by \
                 sasl_password_file / {PASSWORD_FILE_ENV}"
            ));
            return;
        }
        self.options.insert(name.to_owned(), value.to_owned());
    }

    fn load_password(&mut self, env: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) {
        if let Some(pw) = env(PASSWORD_ENV) {
            self.sasl_password = Some(Secret::new(pw));
            return;
        }
        if let Some(path) = &self.sasl_password_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let pw = text.strip_suffix('\n').unwrap_or(&text);
                    let pw = pw.strip_suffix('\r').unwrap_or(pw);
                    self.sasl_password = Some(Secret::new(pw));
                }
                Err(e) => problems.push(format!(
                    "cannot read the SASL password file {}: {e}",
                    path.display()
                )),
            }
        }
    }

    fn check(&self, problems: &mut Vec<String>) {
        if self.bootstrap_servers.trim().is_empty() {
            problems.push(
                "no bootstrap servers: write kafka://HOST:PORT or set DLQ_KAFKA_BOOTSTRAP".into(),
            );
        }
        if self.dlq_prefix.is_empty() {
            problems.push("dlq_prefix must not be empty (the default is \"dlq.\")".into());
        } else if !valid_topic(&self.dlq_prefix) {
            problems.push(format!(
                "dlq_prefix {:?} has characters a topic name cannot have (use a-z, 0-9, '.', '_', '-')",
                self.dlq_prefix
            ));
        }
        for (what, topic) in [("ledger", &self.ledger_topic), ("blobs", &self.blob_topic)] {
            if !valid_topic(topic) {
                problems.push(format!("{what} topic {topic:?} is not a valid topic name"));
            }
        }
        if self.ledger_topic == self.blob_topic {
            problems.push(format!(
                "the ledger and blob topics must differ (both are {:?})",
                self.ledger_topic
            ));
        }
        if self.max_message_bytes < MIN_MAX_MESSAGE_BYTES {
            problems.push(format!(
                "max_message_bytes {} is below the minimum of {MIN_MAX_MESSAGE_BYTES}",
                self.max_message_bytes
            ));
        }
        if self.max_message_bytes > 64 * 1024 * 1024 {
            problems.push(format!(
                "max_message_bytes {} is above 64 MiB; larger payloads go to claim-check blobs anyway",
                self.max_message_bytes
            ));
        }
        if self.default_partitions < 1 {
            problems.push(format!(
                "partitions must be at least 1, not {}",
                self.default_partitions
            ));
        }
        if let Some(rf) = self.replication_factor
            && rf < 1
        {
            problems.push(format!("replication_factor must be at least 1, not {rf}"));
        }
        if let Some(ms) = self.retention_ms
            && ms < -1
        {
            problems.push(format!(
                "retention_ms must be -1 (forever) or a number of milliseconds, not {ms}"
            ));
        }
        if self.timeout_ms < 100 {
            problems.push(format!(
                "timeout_ms {} is too short (at least 100 ms)",
                self.timeout_ms
            ));
        }
        if let Some(id) = &self.transactional_id
            && id.is_empty()
        {
            problems.push("transactional_id must not be empty".into());
        }
        for (name, reason) in MANAGED_OPTIONS {
            if self.options.contains_key(*name) {
                problems.push(format!(
                    "option {name} is managed by the store and cannot be set: {reason}"
                ));
            }
        }
        if self.options.contains_key("sasl.password") {
            problems.push(format!(
                "option sasl.password cannot be set: the SASL password is only read from \
                 {PASSWORD_ENV} or from a file named by sasl_password_file / {PASSWORD_FILE_ENV}"
            ));
        }
        let protocol = self
            .options
            .get("security.protocol")
            .map(|p| p.to_ascii_uppercase())
            .unwrap_or_default();
        let mechanism = self
            .options
            .get("sasl.mechanism")
            .or_else(|| self.options.get("sasl.mechanisms"))
            .map(|m| m.to_ascii_uppercase())
            .unwrap_or_else(|| "GSSAPI".into());
        let password_mechanism = mechanism == "PLAIN" || mechanism.starts_with("SCRAM-");
        if protocol.starts_with("SASL") && password_mechanism {
            if self.sasl_password.is_none() {
                problems.push(format!(
                    "security.protocol {protocol} with sasl.mechanism {mechanism} needs a \
                     password: set {PASSWORD_ENV} or sasl_password_file"
                ));
            }
            if !self.options.contains_key("sasl.username") {
                problems.push(format!(
                    "security.protocol {protocol} with sasl.mechanism {mechanism} needs \
                     sasl.username"
                ));
            }
        }
    }

    /// Checks the configuration as it is (without reading the environment),
    /// reporting every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The SASL password, if one was loaded.
    pub fn sasl_password(&self) -> Option<&Secret> {
        self.sasl_password.as_ref()
    }

    /// Sets the SASL password from a value the caller read from a safe
    /// place (a secret manager); never pass one taken from an argument.
    pub fn set_sasl_password(&mut self, password: Secret) {
        self.sasl_password = Some(password);
    }

    /// The operation timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Every secret value held (the password, secret-looking options), for
    /// scrubbing error messages.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .options
            .iter()
            .filter(|(k, v)| is_secret_option(k) && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        if let Some(pw) = &self.sasl_password
            && !pw.expose().is_empty()
        {
            out.push(pw.expose().to_owned());
        }
        out
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_option(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("options", &options)
            .field("sasl_password_file", &self.sasl_password_file)
            .field("sasl_password", &self.sasl_password)
            .field("dlq_prefix", &self.dlq_prefix)
            .field("ledger_topic", &self.ledger_topic)
            .field("blob_topic", &self.blob_topic)
            .field("format", &self.format)
            .field("retention_ms", &self.retention_ms)
            .field("default_partitions", &self.default_partitions)
            .field("replication_factor", &self.replication_factor)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("timeout_ms", &self.timeout_ms)
            .field("transactions", &self.transactions)
            .field("dedup_window", &self.dedup_window)
            .field("transactional_id", &self.transactional_id)
            .finish()
    }
}

/// The process environment's `DLQ_KAFKA_*` variables (others, and
/// variables that are not UTF-8, are skipped rather than failing).
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("DLQ_KAFKA_"))
        .collect()
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
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

/// The URL with anything that may be a credential replaced by `***`: the
/// user-info part and the values of secret-looking parameters. Used when a
/// URL has to appear in an error.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let head = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &head[..s + 3], &head[at + 1..]),
        _ => head.to_owned(),
    };
    match query {
        None => head,
        Some(q) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_option(k) => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{head}?{}", parts.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-Pa55w0rd-7f3e";

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn url_parameters_set_the_config() {
        let c = KafkaConfig::from_url_with_env(
            "kafka://127.0.0.1:19092,127.0.0.1:19093?dlq_prefix=dead.&ledger=dead.ledger\
             &blobs=dead.blobs&format=headers&retention_ms=604800000&partitions=3\
             &replication_factor=1&max_message_bytes=65536&timeout_ms=5000&transactions=false\
             &scan_cache_bytes=0&dedup_window=500&client.id=dlq%20test",
            env(&[]),
        )
        .expect("valid");
        assert_eq!(c.bootstrap_servers, "127.0.0.1:19092,127.0.0.1:19093");
        assert_eq!(c.dlq_prefix, "dead.");
        assert_eq!(c.ledger_topic, "dead.ledger");
        assert_eq!(c.blob_topic, "dead.blobs");
        assert_eq!(c.format, Format::Headers);
        assert_eq!(c.retention_ms, Some(604_800_000));
        assert_eq!(c.default_partitions, 3);
        assert_eq!(c.replication_factor, Some(1));
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert!(!c.transactions);
        assert_eq!(c.dedup_window, 500);
        assert_eq!(c.options["client.id"], "dlq test");
    }

    #[test]
    fn defaults() {
        let c = KafkaConfig::from_url_with_env("kafka://h:9092", env(&[])).expect("valid");
        assert_eq!(c.dlq_prefix, "dlq.");
        assert_eq!(c.ledger_topic, "dlq.ledger");
        assert_eq!(c.blob_topic, "dlq.blobs");
        assert_eq!(c.format, Format::Envelope);
        assert_eq!(c.max_message_bytes, 1024 * 1024);
        assert!(c.transactions);
        assert_eq!(c.dedup_window, 10_000);
        assert!(
            KafkaConfig::from_url_with_env("kafka://h:9092?dedup_window=0", env(&[])).is_err(),
            "a window of nothing would deduplicate nothing"
        );
        assert!(c.sasl_password().is_none());
    }

    #[test]
    fn the_url_overrides_the_environment_which_fills_in_the_rest() {
        let vars = env(&[
            ("DLQ_KAFKA_BOOTSTRAP", "other:9092"),
            ("DLQ_KAFKA_FORMAT", "envelope"),
            ("DLQ_KAFKA_LEDGER", "ops.ledger"),
            ("DLQ_KAFKA_PORT", "19092"),
        ]);
        let c = KafkaConfig::from_url_with_env("kafka://h:9092?format=headers", vars.clone())
            .expect("valid; unrelated DLQ_KAFKA_* ignored");
        assert_eq!(c.bootstrap_servers, "h:9092");
        assert_eq!(c.format, Format::Headers);
        assert_eq!(c.ledger_topic, "ops.ledger", "what the URL does not say");
        // A URL without hosts takes them from the environment.
        let c = KafkaConfig::from_url_with_env("kafka://", vars.clone()).expect("valid");
        assert_eq!(c.bootstrap_servers, "other:9092");
        // A file's configuration is overridden by the environment.
        let c = KafkaConfig::new("h:9092")
            .resolve_with(vars)
            .expect("valid");
        assert_eq!(c.bootstrap_servers, "other:9092");
    }

    #[test]
    fn option_variables_set_client_options() {
        let c = KafkaConfig::from_url_with_env(
            "kafka://h:9092?security.protocol=SSL",
            env(&[
                ("DLQ_KAFKA_OPTION_SSL_CA_LOCATION", "/etc/ca.pem"),
                ("DLQ_KAFKA_OPTION_SECURITY_PROTOCOL", "SASL_SSL"),
                ("DLQ_KAFKA_OPTION_SASL_MECHANISM", "SCRAM-SHA-256"),
                ("DLQ_KAFKA_OPTION_SASL_USERNAME", "dlq"),
                (PASSWORD_ENV, CANARY),
                ("HOME", "/root"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.options["ssl.ca.location"], "/etc/ca.pem");
        assert_eq!(c.options["security.protocol"], "SSL", "the URL over env");
        assert_eq!(c.options["sasl.username"], "dlq");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = KafkaConfig::from_url_with_env(
            "kafka://?format=xml&partitions=0&colour=blue&timeout_ms=soon&max_message_bytes=10\
             &transactional.id=x",
            env(&[("DLQ_KAFKA_REPLICATION_FACTOR", "many")]),
        )
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "format=\"xml\"",
            "partitions must be at least 1",
            "\"colour\"",
            "timeout_ms=\"soon\"",
            "max_message_bytes 10",
            "transactional.id is managed",
            "DLQ_KAFKA_REPLICATION_FACTOR replication_factor=\"many\"",
            "no bootstrap servers",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(
            KafkaConfig::from_url_with_env("sqlite://x", env(&[]))
                .expect_err("scheme")
                .to_string()
                .contains("kafka://")
        );
    }

    #[test]
    fn password_comes_from_env_or_file_only() {
        let c = KafkaConfig::from_url_with_env(
            "kafka://h:9092?security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512&sasl.username=u",
            env(&[(PASSWORD_ENV, CANARY)]),
        )
        .expect("valid");
        assert_eq!(c.sasl_password().map(Secret::expose), Some(CANARY));

        let dir = std::env::temp_dir().join(format!("dlq-kafka-pw-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, format!("{CANARY}\n")).expect("write");
        let c = KafkaConfig::from_url_with_env(
            "kafka://h:9092?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN&sasl.username=u",
            env(&[(PASSWORD_FILE_ENV, dir.to_str().expect("utf8"))]),
        )
        .expect("valid");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(c.sasl_password().map(Secret::expose), Some(CANARY));

        let err = KafkaConfig::from_url_with_env(
            "kafka://h:9092?security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.username=u",
            env(&[]),
        )
        .expect_err("no password");
        assert!(err.to_string().contains(PASSWORD_ENV), "{err}");
    }

    #[test]
    fn password_in_url_or_options_is_refused_with_where_to_put_it() {
        let url = format!("kafka://h:9092?sasl.password={CANARY}");
        let err = KafkaConfig::from_url_with_env(&url, env(&[])).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(PASSWORD_ENV) && text.contains("sasl_password_file"),
            "{text}"
        );
        assert!(!text.contains(CANARY), "{text}");

        let url = format!("kafka://user:{CANARY}@h:9092");
        let err = KafkaConfig::from_url_with_env(&url, env(&[])).expect_err("refused");
        assert!(!err.to_string().contains(CANARY));
        assert!(!redact_url(&url).contains(CANARY), "{}", redact_url(&url));

        let mut c = KafkaConfig::new("h:9092");
        c.options.insert("sasl.password".into(), CANARY.into());
        let err = c.resolve_with(env(&[])).expect_err("refused");
        assert!(err.to_string().contains(PASSWORD_ENV));
        assert!(!err.to_string().contains(CANARY));

        let err = KafkaConfig::from_url_with_env(
            "kafka://h:9092",
            env(&[("DLQ_KAFKA_OPTION_SASL_PASSWORD", CANARY)]),
        )
        .expect_err("refused");
        assert!(err.to_string().contains(PASSWORD_ENV));
        assert!(!err.to_string().contains(CANARY));
    }

    #[test]
    fn canary_password_never_appears_in_debug_or_errors() {
        let mut c = KafkaConfig::from_url_with_env(
            "kafka://h:9092?security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.username=u\
             &ssl.key.password=also-secret-1",
            env(&[(PASSWORD_ENV, CANARY)]),
        )
        .expect("valid");
        let debug = format!("{c:?} {:?} {}", c.sasl_password(), Secret::new(CANARY));
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("also-secret-1"), "{debug}");
        assert!(debug.contains("***"));
        // A config error raised next to a loaded password does not show it.
        c.default_partitions = 0;
        let err = c.clone().resolve_with(env(&[(PASSWORD_ENV, CANARY)]));
        let text = format!(
            "{:?} {}",
            err,
            err.as_ref().map(|_| "").unwrap_or_else(|e| &e.problems[0])
        );
        assert!(!text.contains(CANARY), "{text}");
        assert!(c.secret_values().contains(&CANARY.to_owned()));
    }

    #[test]
    fn redacted_url_keeps_the_rest() {
        assert_eq!(
            redact_url("kafka://u:p@h:1?sasl.password=x&format=headers"),
            "kafka://***@h:1?sasl.password=***&format=headers"
        );
        assert_eq!(redact_url("kafka://h:1"), "kafka://h:1");
    }

    #[test]
    fn example_config_file_parses_and_rejects_unknown_fields() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"bootstrap_servers":"b:9092","format":"headers","retention_ms":-1,
                "options":{"security.protocol":"PLAINTEXT"}}"#,
        )
        .expect("parses");
        assert_eq!(c.format, Format::Headers);
        let c = c.resolve_with(env(&[])).expect("valid");
        assert_eq!(c.retention_ms, Some(-1));
        assert!(
            serde_json::from_str::<KafkaConfig>(r#"{"bootstrap_servers":"b","sasl_password":"x"}"#)
                .is_err(),
            "the password is not a config field"
        );
    }
}
