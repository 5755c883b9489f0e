//! A `confluent_kafka`-style config dict → [`KafkaConfig`].
//!
//! The seed's Lambda builds `{"bootstrap.servers": …, "security.protocol":
//! "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.username": …,
//! "sasl.password": os.environ[…]}`. Every key is a librdkafka property
//! and passes through to every client dlq creates, with three exceptions:
//! `bootstrap.servers` (or `metadata.broker.list`) names the cluster;
//! `sasl.password` goes into a [`Secret`] (never printed, scrubbed from
//! error texts); and properties dlq manages itself are accepted when they
//! agree with what dlq does (`acks=all`, `enable.idempotence=true`) and
//! refused otherwise, with the reason. Without a `sasl.password` key the
//! password comes from `DLQ_KAFKA_SASL_PASSWORD` (or the file named by
//! `DLQ_KAFKA_SASL_PASSWORD_FILE`), as for the `dlq` command. Without a dict
//! at all, the whole configuration comes from the `DLQ_KAFKA_*`
//! environment.
//!
//! dlq's own settings (the DLQ prefix, the operation timeout, the
//! replication factor of topics it creates) are keyword arguments, not
//! dict keys, so that a dict stays valid for `confluent_kafka` too.

use crate::errors::{config_error, no_panic};
use dlq_kafka::KafkaConfig;
use dlq_kafka::Secret;
use dlq_kafka::config::{PASSWORD_ENV, PASSWORD_FILE_ENV};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use std::collections::BTreeMap;
use std::time::Duration;

/// dlq's own settings, given as keyword arguments.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Topics whose name starts with this are DLQs.
    pub dlq_prefix: Option<String>,
    /// How long one broker operation may take.
    pub timeout: Option<Duration>,
    /// Replication factor of topics dlq creates (DLQs, ledger, blobs).
    pub replication_factor: Option<i16>,
}

/// Converts seconds from Python into a duration, refusing what is not one.
pub fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        config_error(&[format!(
            "{what} must be a positive number of seconds, not {value}"
        )])
    })
}

/// One property value as librdkafka wants it: a string.
fn property_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    // bool before int: a Python bool is an int too.
    if value.is_instance_of::<PyBool>() {
        return Ok(if value.extract::<bool>()? {
            "true"
        } else {
            "false"
        }
        .to_owned());
    }
    if value.is_instance_of::<PyString>()
        || value.is_instance_of::<PyInt>()
        || value.is_instance_of::<PyFloat>()
    {
        return Ok(value.str()?.to_cow()?.into_owned());
    }
    if value.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "config[{key:?}]: callbacks are not supported; dlq reports every outcome \
             in the report it returns and raises exceptions for errors"
        )));
    }
    Err(PyTypeError::new_err(format!(
        "config[{key:?}] must be a str, int, float or bool, not {}",
        value.get_type().name()?
    )))
}

/// Whether a managed property's value is what dlq does anyway.
fn agrees_with_dlq(key: &str, value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    match key {
        "acks" | "request.required.acks" => v == "all" || v == "-1",
        "enable.idempotence" => v == "true",
        _ => false,
    }
}

/// Builds the configuration from a dict (or the environment) and the
/// keyword settings; every problem is reported at once.
pub fn kafka_config(
    config: Option<&Bound<'_, PyDict>>,
    options: &StoreOptions,
) -> PyResult<KafkaConfig> {
    let mut problems = Vec::new();
    let Some(dict) = config else {
        // No dict: the DLQ_KAFKA_* environment, as for the `dlq` command.
        let mut kafka = KafkaConfig::new("");
        apply(&mut kafka, options);
        return kafka.resolve().map_err(|e| config_error(&e.problems));
    };
    let mut bootstrap = None;
    let mut password = None;
    let mut properties = BTreeMap::new();
    for (key, value) in dict.iter() {
        let key: String = key.extract().map_err(|_| {
            PyTypeError::new_err("config keys must be str (librdkafka property names)")
        })?;
        let value = property_value(&key, &value)?;
        match key.as_str() {
            "bootstrap.servers" | "metadata.broker.list" => bootstrap = Some(value),
            "sasl.password" => password = Some(Secret::new(value)),
            k if agrees_with_dlq(k, &value) => {}
            _ => {
                properties.insert(key, value);
            }
        }
    }
    let Some(bootstrap) = bootstrap else {
        problems.push("config has no \"bootstrap.servers\"".to_owned());
        return Err(config_error(&problems));
    };
    let mut kafka = KafkaConfig::new(bootstrap);
    kafka.options = properties;
    apply(&mut kafka, options);
    match password {
        Some(pw) => {
            kafka.set_sasl_password(pw);
            kafka.validate().map_err(|e| config_error(&e.problems))?;
            Ok(kafka)
        }
        None => {
            // Only the password's variables: a deployment's DLQ_KAFKA_BOOTSTRAP
            // must not redirect a dict that names its cluster.
            let env = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k == PASSWORD_ENV || k == PASSWORD_FILE_ENV);
            kafka
                .resolve_with(env)
                .map_err(|e| config_error(&e.problems))
        }
    }
}

fn apply(kafka: &mut KafkaConfig, options: &StoreOptions) {
    if let Some(p) = &options.dlq_prefix {
        kafka.dlq_prefix = p.clone();
    }
    if let Some(t) = options.timeout {
        kafka.timeout_ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
    }
    if let Some(rf) = options.replication_factor {
        kafka.replication_factor = Some(rf);
    }
}

/// The Kafka settings dlq uses, as built from a config dict: what passes
/// through to librdkafka, and whether a password was found — never the
/// password itself.
#[pyclass(module = "dlq", frozen)]
pub struct KafkaSettings {
    config: KafkaConfig,
}

impl KafkaSettings {
    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

#[pymethods]
impl KafkaSettings {
    /// The brokers to bootstrap from.
    #[getter]
    fn bootstrap_servers(&self) -> String {
        self.config.bootstrap_servers.clone()
    }

    /// librdkafka properties passed through to every client, secret
    /// values (passwords, secrets, tokens, keys) shown as `***`.
    #[getter]
    fn properties(&self) -> BTreeMap<String, String> {
        self.config
            .options
            .iter()
            .map(|(k, v)| {
                let v = if looks_secret(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// Whether a SASL password was given (in the dict or the environment).
    #[getter]
    fn has_sasl_password(&self) -> bool {
        self.config.sasl_password().is_some()
    }

    /// Topics whose name starts with this are DLQs.
    #[getter]
    fn dlq_prefix(&self) -> String {
        self.config.dlq_prefix.clone()
    }

    /// How long one broker operation may take, in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.config.timeout().as_secs_f64()
    }

    fn __repr__(&self) -> String {
        // KafkaConfig's Debug masks the password and secret options.
        format!("KafkaSettings({:?})", self.config)
    }
}

/// The same rule as the store's: names that look secret are masked.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("token")
        || n == "ssl.key.pem"
        || n == "sasl.oauthbearer.config"
}

/// `dlq.kafka_settings(config=None, *, dlq_prefix=None, timeout=None,
/// replication_factor=None)`: the settings dlq would use for this config.
#[pyfunction]
#[pyo3(signature = (config=None, *, dlq_prefix=None, timeout=None, replication_factor=None))]
pub fn kafka_settings(
    config: Option<&Bound<'_, PyDict>>,
    dlq_prefix: Option<String>,
    timeout: Option<f64>,
    replication_factor: Option<i16>,
) -> PyResult<KafkaSettings> {
    no_panic(|| {
        let options = StoreOptions {
            dlq_prefix,
            timeout: timeout.map(|t| seconds("timeout", t)).transpose()?,
            replication_factor,
        };
        Ok(KafkaSettings {
            config: kafka_config(config, &options)?,
        })
    })
}
