//! [`SqsTarget`]: a replay target that sends each record to an SQS queue,
//! the one its redrive policy moved it from (`DeadLetterQueueSourceArn`) or
//! one named by `--to sqs:QUEUE`.
//!
//! Delivery: a send is durable once SQS acknowledges it, so the replay
//! engine settles a record (and the store deletes its DLQ message) only
//! after its send succeeded: at-least-once, never lost. A replay killed
//! between a send and its settlement sends those records again when rerun;
//! a FIFO target drops them as duplicates within SQS's five-minute window
//! (the deduplication id is derived from the record id and its replay
//! count), a standard queue receives them twice.
//!
//! A body over SQS's limit is claim-checked again (re-pointed) when the
//! store has `claims=s3://…`: the target writes it to an object of its own
//! (named after the record id and replay count) and sends a pointer, as
//! the SQS Extended Client does; without `claims` such a record goes back
//! to its DLQ as a failed replay naming the option.

use crate::client::{Client, Outgoing};
use crate::codec;
use crate::config::{ClaimsConfig, SqsConfig};
use crate::store::{fifo_dedup, fifo_group};
use dlq_core::replay::ReplayTarget;
use dlq_core::store::StoreError;
use dlq_core::{DeadLetter, Failure};
use std::collections::HashMap;
use std::io;

/// SQS's most message attributes per message.
const MAX_ATTRIBUTES: usize = 10;

/// Sends replayed records to SQS queues.
#[derive(Debug)]
pub struct SqsTarget {
    client: Client,
    queue: Option<String>,
    claims: Option<ClaimsConfig>,
    sent: HashMap<String, u64>,
}

impl SqsTarget {
    /// A target on the account and endpoint of `config`: every record to
    /// `queue`, or (`None`) each to the queue its redrive moved it from.
    ///
    /// # Errors
    ///
    /// The client cannot start.
    pub fn new(config: &SqsConfig, queue: Option<String>) -> Result<SqsTarget, StoreError> {
        Ok(SqsTarget {
            client: Client::new(config)?,
            queue,
            claims: config.claims.clone(),
            sent: HashMap::new(),
        })
    }

    /// Records sent so far, by queue.
    pub fn sent(&self) -> &HashMap<String, u64> {
        &self.sent
    }

    fn queue_of<'a>(&'a self, letter: &'a DeadLetter) -> io::Result<&'a str> {
        if let Some(q) = &self.queue {
            return Ok(q);
        }
        match (&letter.source.system[..], letter.source.topic.as_deref()) {
            ("sqs", Some(queue)) => Ok(queue),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record {:?} names no source queue (it was not moved by a redrive policy): \
                     replay it with --to sqs:QUEUE",
                    letter.id
                ),
            )),
        }
    }
}

fn rejected(class: &str, message: String) -> Failure {
    Failure::permanent("replay", format!("sqs.{class}"), message)
}

/// A header name SQS takes as a message attribute name.
fn valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

impl ReplayTarget for SqsTarget {
    fn name(&self) -> String {
        match &self.queue {
            Some(q) => format!("sqs:{q}"),
            None => "sqs:(each record's source queue)".to_owned(),
        }
    }

    fn deliver(&mut self, letter: &DeadLetter, payload: &[u8]) -> io::Result<Result<(), Failure>> {
        let queue = self.queue_of(letter)?.to_owned();
        let body = match std::str::from_utf8(payload) {
            Ok(text) if !text.is_empty() && codec::is_sqs_text(text) => text.to_owned(),
            _ => {
                return Ok(Err(rejected(
                    "body_not_text",
                    "an SQS message body must be non-empty text (XML characters)".into(),
                )));
            }
        };
        let mut attributes = HashMap::new();
        for h in &letter.headers {
            if !valid_attribute_name(&h.name) {
                return Ok(Err(rejected(
                    "attribute_name",
                    format!(
                        "header {:?} is not a valid SQS message attribute name",
                        h.name
                    ),
                )));
            }
            if let Some(value) = codec::attribute_of_header(h) {
                attributes.insert(h.name.clone(), value.map_err(io::Error::other)?);
            }
        }
        if attributes.len() > MAX_ATTRIBUTES {
            return Ok(Err(rejected(
                "too_many_attributes",
                format!(
                    "{} headers, but an SQS message takes at most {MAX_ATTRIBUTES} attributes",
                    attributes.len()
                ),
            )));
        }
        let url = self
            .client
            .queue_url(&queue)
            .map_err(io::Error::other)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no SQS queue named {queue}"),
                )
            })?;
        let mut body = body;
        let attribute_bytes: usize = attributes
            .iter()
            .map(|(k, v)| {
                k.len()
                    + v.data_type().len()
                    + v.string_value().map_or(0, str::len)
                    + v.binary_value().map_or(0, |b| b.as_ref().len())
            })
            .sum();
        if body.len() + attribute_bytes > codec::MAX_MESSAGE_BYTES {
            let Some(claims) = &self.claims else {
                return Ok(Err(rejected(
                    "too_large",
                    format!(
                        "{} bytes, over SQS's limit of {}: give the store a bucket for large \
                         bodies (sqs://REGION?claims=s3://BUCKET/PREFIX)",
                        body.len() + attribute_bytes,
                        codec::MAX_MESSAGE_BYTES
                    ),
                )));
            };
            if attributes.len() >= MAX_ATTRIBUTES {
                return Ok(Err(rejected(
                    "too_many_attributes",
                    "a claim-checked message needs one attribute of its ten for its size".into(),
                )));
            }
            let key = crate::claims::object_key(
                claims,
                &queue,
                &format!("{}#{}", letter.id, letter.replays),
            );
            crate::claims::offload(&self.client, claims, &key, &mut body, &mut attributes)
                .map_err(io::Error::other)?;
        }
        let fifo = queue.ends_with(".fifo");
        let message = Outgoing {
            body,
            attributes,
            group: fifo.then(|| fifo_group(letter)),
            dedup: fifo.then(|| fifo_dedup(&format!("{}#{}", letter.id, letter.replays))),
        };
        match self.client.send(&url, std::slice::from_ref(&message)) {
            Ok(_) => {
                *self.sent.entry(queue).or_default() += 1;
                Ok(Ok(()))
            }
            // SQS refused this message (its fault is the record's): the
            // record goes back to its DLQ with the reason.
            Err(StoreError::Backend {
                message,
                retryable: false,
                ..
            }) if message.contains("refused an entry") => Ok(Err(rejected("refused", message))),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn flush(&mut self) -> io::Result<Option<(String, String)>> {
        // Every send was acknowledged by SQS, which makes it durable.
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_attribute_name;

    #[test]
    fn attribute_names_follow_sqs_rules() {
        assert!(valid_attribute_name("trace-id"));
        assert!(valid_attribute_name("dlq.replay_of"));
        assert!(!valid_attribute_name("AWS.TraceHeader"));
        assert!(!valid_attribute_name("a..b"));
        assert!(!valid_attribute_name("with space"));
        assert!(!valid_attribute_name(""));
    }
}
