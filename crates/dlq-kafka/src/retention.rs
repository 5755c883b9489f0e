//! The retention of DLQ topics (`retention.ms`), read with the admin
//! client: the monitor uses it to count the pending records that Kafka
//! will delete soon (expiry risk).

use crate::client::{base_config, block_on};
use crate::config::KafkaConfig;
use crate::retry::{Redactor, backend, failure};
use dlq_core::store::Result;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;

/// The `retention.ms` of each topic, in one DescribeConfigs request:
/// `Some(ms)`, or `None` for a topic that keeps records forever (`-1`).
/// A topic that does not exist (or cannot be described) is an error naming
/// it; errors never carry credentials.
pub fn topic_retention_ms(
    config: &KafkaConfig,
    topics: &[&str],
) -> Result<BTreeMap<String, Option<i64>>> {
    let redactor = Redactor::new(config.secret_values());
    let op = "reading retention.ms";
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let admin: AdminClient<DefaultClientContext> = base_config(config)
        .create()
        .map_err(|e| backend(&redactor, "creating the admin client", None, &e))?;
    let opts = AdminOptions::new().request_timeout(Some(config.timeout()));
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = block_on(admin.describe_configs(&resources, &opts))
        .map_err(|e| backend(&redactor, op, None, &e))?;
    for (topic, result) in topics.iter().zip(results) {
        let resource = result
            .map_err(|code| backend(&redactor, op, Some(topic), &KafkaError::AdminOp(code)))?;
        let value = resource
            .get("retention.ms")
            .and_then(|entry| entry.value.as_deref())
            .ok_or_else(|| {
                failure(
                    format!("{op} on topic {topic}: the broker did not return it"),
                    false,
                )
            })?;
        let ms: i64 = value.parse().map_err(|_| {
            failure(
                format!("{op} on topic {topic}: {value:?} is not a number of milliseconds"),
                false,
            )
        })?;
        out.insert((*topic).to_owned(), (ms >= 0).then_some(ms));
    }
    Ok(out)
}
