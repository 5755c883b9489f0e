//! Dead letters as SQS messages, and SQS messages as dead letters.
//!
//! **Written by dlq**: the body is the payload (SQS bodies are text: a
//! payload that is not valid SQS text goes base64, an empty or null one as
//! `-`), and the metadata is in message attributes, so that other SQS
//! tools see the payload as it was:
//!
//! | attribute | type | value |
//! |---|---|---|
//! | `dlq.id` | String | the record id |
//! | `dlq.error_class` | String | the error class (for consoles and filters) |
//! | `dlq.body` | String | `text`, `base64`, `empty` or `null` |
//! | `dlq.envelope` | Binary | the v1 envelope without its payload |
//! | `dlq.status` | String | `parked`, for a record appended parked |
//!
//! **Written by anything else** (a redrive policy, boto3, the AWS CLI, a
//! Lambda's async DLQ): the body is decoded as any DLQ record is (a dlq or
//! seed envelope, else raw bytes); a raw record's id is the SQS message id,
//! its error what SQS knows (the source queue and receive count of a
//! redrive, the `ErrorCode` / `ErrorMessage` attributes Lambda sets), its
//! failure time the `SentTimestamp`, its key a FIFO `MessageGroupId`, and
//! its message attributes become headers.

use crate::config::queue_of_arn;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use dlq_core::envelope::{self, EncodeOptions, Origin};
use dlq_core::store::{Status, StoreError};
use dlq_core::{DeadLetter, Failure, Header};
use std::collections::HashMap;

/// SQS's limit on a message: body and attributes together.
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// The body of an empty or null payload (SQS refuses an empty body).
const PLACEHOLDER_BODY: &str = "-";

/// The error class of a message a redrive policy moved: SQS keeps no
/// error, only that the consumer received it too often without deleting it.
pub const REDRIVE_ERROR_CLASS: &str = "sqs.max_receives_exceeded";

/// The message attribute in which the Amazon SQS Extended Client (Java
/// 2.x, Python, .NET) marks a claim-checked message and gives the size of
/// its body in S3 (Number).
pub const SIZE_ATTRIBUTE: &str = "ExtendedPayloadSize";

/// The attribute older Extended Clients (Java 1.x) use for the same.
pub const LEGACY_SIZE_ATTRIBUTE: &str = "SQSLargePayloadSize";

/// The class name the Extended Client writes first in a pointer body.
pub const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";

/// Room left in a message for the pointer body and the size attribute when
/// its body is claim-checked.
const POINTER_ROOM: usize = 2048;

/// A dead letter as an SQS message: body and attributes.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The body.
    pub body: String,
    /// The message attributes.
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// The body is over SQS's limit: it must go to S3, the message
    /// carrying a pointer to it ([`pointer_body`], [`size_attribute`]).
    pub offload: bool,
}

/// The body of a claim-checked message, as the Extended Client writes it:
/// `["software.amazon.payloadoffloading.PayloadS3Pointer",
/// {"s3BucketName":"B","s3Key":"K"}]`.
pub fn pointer_body(bucket: &str, key: &str) -> String {
    serde_json::json!([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}]).to_string()
}

/// The `ExtendedPayloadSize` attribute of a claim-checked body of `len`
/// bytes.
///
/// # Errors
///
/// Building the attribute failed (never for a number).
pub fn size_attribute(len: usize) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(len.to_string())
        .build()
        .map_err(|e| crate::errors::local(format!("building a message attribute: {e}")))
}

/// The bucket and key a claim-checked message's body points to, if `m` is
/// one: a size attribute (current or legacy) and a pointer body (the
/// class name may be repackaged, e.g. `awsv2.repackaged.…`).
pub fn pointer_of(m: &Message) -> Option<(String, String)> {
    let attrs = m.message_attributes()?;
    if !attrs.contains_key(SIZE_ATTRIBUTE) && !attrs.contains_key(LEGACY_SIZE_ATTRIBUTE) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(m.body()?).ok()?;
    let [class, pointer] = value.as_array()?.as_slice() else {
        return None;
    };
    if !class.as_str()?.ends_with("PayloadS3Pointer") {
        return None;
    }
    Some((
        pointer.get("s3BucketName")?.as_str()?.to_owned(),
        pointer.get("s3Key")?.as_str()?.to_owned(),
    ))
}

fn string_attr(value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| crate::errors::local(format!("building a message attribute: {e}")))
}

fn binary_attr(value: &[u8]) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(Blob::new(value))
        .build()
        .map_err(|e| crate::errors::local(format!("building a message attribute: {e}")))
}

/// Whether SQS takes `text` as a body or string attribute as it is (XML
/// 1.0 characters only).
pub fn is_sqs_text(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    })
}

/// The body of a payload and how it was written (`dlq.body`).
pub fn body_of(payload: &[u8], null: bool) -> (String, &'static str) {
    if null {
        return (PLACEHOLDER_BODY.to_owned(), "null");
    }
    if payload.is_empty() {
        return (PLACEHOLDER_BODY.to_owned(), "empty");
    }
    match std::str::from_utf8(payload) {
        Ok(text) if is_sqs_text(text) => (text.to_owned(), "text"),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            "base64",
        ),
    }
}

/// Encodes a dead letter (appended with `status`) as a message; a record
/// over SQS's limit is refused (see [`encode_with`]).
///
/// # Errors
///
/// A record SQS cannot hold: over 256 KiB with its metadata, or one whose
/// envelope needs claim checks.
pub fn encode(letter: &DeadLetter, status: Status) -> Result<Encoded, StoreError> {
    encode_with(letter, status, false)
}

/// Encodes a dead letter; with `can_offload`, a body that makes the message
/// too large is marked [`Encoded::offload`] (the caller puts it in S3)
/// instead of refused.
///
/// # Errors
///
/// A record SQS cannot hold even so: its metadata alone over the limit, an
/// envelope that needs claim checks, or a large body and no `can_offload`.
pub fn encode_with(
    letter: &DeadLetter,
    status: Status,
    can_offload: bool,
) -> Result<Encoded, StoreError> {
    let (body, how) = body_of(&letter.payload, letter.null_payload);
    let mut meta = letter.clone();
    meta.payload.clear();
    meta.null_payload = false;
    let env = envelope::encode(&meta, &EncodeOptions::default())?;
    let metadata = env.bytes.len() + letter.id.len() + letter.error_class.len() + 128;
    let size = body.len() + metadata;
    let offload = size > MAX_MESSAGE_BYTES && can_offload;
    if !env.blobs.is_empty()
        || metadata + POINTER_ROOM > MAX_MESSAGE_BYTES
        || (size > MAX_MESSAGE_BYTES && !offload)
    {
        let hint = if env.blobs.is_empty() && metadata + POINTER_ROOM <= MAX_MESSAGE_BYTES {
            "; give the store a bucket for large bodies: \
             sqs://REGION?claims=s3://BUCKET/PREFIX (claim checks, as the SQS Extended Client \
             writes them)"
        } else {
            "; its metadata (headers, error text) alone is too large for SQS"
        };
        return Err(StoreError::Backend {
            backend: "sqs",
            message: format!(
                "record {:?} is {size} bytes as an SQS message, over SQS's limit of \
                 {MAX_MESSAGE_BYTES}{hint}",
                letter.id
            ),
            retryable: false,
        });
    }
    let mut attributes = HashMap::new();
    attributes.insert("dlq.id".to_owned(), text_or_binary(&letter.id)?);
    attributes.insert(
        "dlq.error_class".to_owned(),
        text_or_binary(&letter.error_class)?,
    );
    attributes.insert("dlq.body".to_owned(), string_attr(how)?);
    attributes.insert("dlq.envelope".to_owned(), binary_attr(&env.bytes)?);
    if status == Status::Parked {
        attributes.insert("dlq.status".to_owned(), string_attr("parked")?);
    }
    Ok(Encoded {
        body,
        attributes,
        offload,
    })
}

fn text_or_binary(value: &str) -> Result<MessageAttributeValue, StoreError> {
    if !value.is_empty() && is_sqs_text(value) {
        string_attr(value)
    } else {
        binary_attr(value.as_bytes())
    }
}

/// A header as a message attribute: text as String, anything else Binary
/// (an empty or null value as an empty Binary is refused by SQS, so those
/// are left out; the caller decides whether that is acceptable).
pub fn attribute_of_header(header: &Header) -> Option<Result<MessageAttributeValue, StoreError>> {
    let value = header.value.as_deref().filter(|v| !v.is_empty())?;
    Some(match std::str::from_utf8(value) {
        Ok(text) if is_sqs_text(text) => string_attr(text),
        _ => binary_attr(value),
    })
}

fn attr_text(m: &Message, name: &str) -> Option<String> {
    let v = m.message_attributes()?.get(name)?;
    v.string_value().map(str::to_owned).or_else(|| {
        v.binary_value()
            .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
    })
}

fn system(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes()?.get(&name).map(String::as_str)
}

fn millis(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(text?.parse().ok()?)
}

/// A received message as a dead letter, with the status it was appended
/// with (`Parked` when dlq wrote it parked, else `Pending`).
pub fn decode(m: &Message) -> (DeadLetter, Status) {
    let message_id = m.message_id().unwrap_or_default();
    let body = m.body().unwrap_or_default();
    let status = match attr_text(m, "dlq.status").as_deref() {
        Some("parked") => Status::Parked,
        _ => Status::Pending,
    };
    if let Some(letter) = decode_own(m, body) {
        return (letter, status);
    }
    (decode_foreign(m, message_id, body), Status::Pending)
}

/// A message dlq wrote, if it is one (a complete envelope attribute).
fn decode_own(m: &Message, body: &str) -> Option<DeadLetter> {
    let attrs = m.message_attributes()?;
    let env = attrs.get("dlq.envelope")?.binary_value()?;
    let id = attr_text(m, "dlq.id")?;
    let mut letter = envelope::decode(env.as_ref(), &id);
    if letter.origin != Origin::Envelope {
        return None;
    }
    match attr_text(m, "dlq.body").as_deref() {
        Some("text") => letter.payload = body.as_bytes().to_vec(),
        Some("base64") => {
            letter.payload = base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?;
        }
        Some("empty") => letter.payload.clear(),
        Some("null") => {
            letter.payload.clear();
            letter.null_payload = true;
        }
        _ => return None,
    }
    Some(letter)
}

/// A message another client wrote (or a redrive policy moved).
fn decode_foreign(m: &Message, message_id: &str, body: &str) -> DeadLetter {
    let mut letter = envelope::decode(body.as_bytes(), message_id);
    let sent = millis(system(m, MessageSystemAttributeName::SentTimestamp));
    // The count includes the receive that is reading it now (SQS counts
    // every receive, a redrive carries the count over): the consumer's
    // receives are one fewer, when this is the first read since the move.
    let receives: u32 = system(m, MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_sub(1);
    let source_arn = system(m, MessageSystemAttributeName::DeadLetterQueueSourceArn);
    let source_queue = source_arn.and_then(queue_of_arn);
    if letter.origin == Origin::Raw {
        let failure = foreign_failure(m, source_queue, receives);
        letter.stage = failure.stage;
        letter.error_class = failure.error_class;
        letter.error = failure.message;
        letter.retryable = failure.retryable;
        letter.attempts = receives;
        if let Some(t) = sent {
            letter.failed_at = t;
            letter.first_failed_at = t;
        }
        letter.key =
            system(m, MessageSystemAttributeName::MessageGroupId).map(|g| g.as_bytes().to_vec());
        let mut names: Vec<&String> = m
            .message_attributes()
            .map(|a| a.keys().collect())
            .unwrap_or_default();
        names.sort();
        letter.headers = names
            .into_iter()
            .filter_map(|name| {
                let v = m.message_attributes()?.get(name)?;
                let value = v
                    .string_value()
                    .map(|s| s.as_bytes().to_vec())
                    .or_else(|| v.binary_value().map(|b| b.as_ref().to_vec()))?;
                Some(Header {
                    name: name.clone(),
                    value: Some(value),
                })
            })
            .collect();
    }
    letter.source.system = "sqs".into();
    if let Some(queue) = source_queue {
        letter.source.topic = Some(queue.to_owned());
    }
    if letter.source.timestamp.is_none() {
        letter.source.timestamp = sent;
    }
    letter
}

fn foreign_failure(m: &Message, source_queue: Option<&str>, receives: u32) -> Failure {
    // Lambda's asynchronous-invocation DLQ says what failed.
    if let Some(message) = attr_text(m, "ErrorMessage") {
        let code = attr_text(m, "ErrorCode").unwrap_or_else(|| "unknown".into());
        return Failure::permanent("lambda", format!("lambda.{code}"), message);
    }
    match source_queue {
        Some(queue) => Failure::transient(
            "sqs.redrive",
            REDRIVE_ERROR_CLASS,
            format!(
                "moved from queue {queue} by its redrive policy after {receives} receives \
                 without a delete (SQS keeps no error)"
            ),
        ),
        None => Failure::permanent(
            "unknown",
            envelope::UNKNOWN_ERROR_CLASS,
            "message is not a DLQ envelope and carries no error; its body is kept as the payload",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_text_excludes_control_characters_and_noncharacters() {
        assert!(is_sqs_text("{\"a\":\"\u{2603}\"}\n\t"));
        assert!(!is_sqs_text("nul\u{0}"));
        assert!(!is_sqs_text("\u{FFFE}"));
    }

    #[test]
    fn bodies_keep_text_and_base64_anything_else() {
        assert_eq!(body_of(b"{}", false), ("{}".to_owned(), "text"));
        assert_eq!(body_of(b"", false).1, "empty");
        assert_eq!(body_of(b"", true).1, "null");
        assert_eq!(body_of(b"\xff\x00", false), ("/wA=".to_owned(), "base64"));
    }

    #[test]
    fn a_record_over_the_sqs_limit_is_refused_with_a_reason() {
        let f = Failure::permanent("s", "c", "m");
        let letter = DeadLetter::new("big", vec![b'a'; MAX_MESSAGE_BYTES], &f);
        let err = encode(&letter, Status::Pending)
            .expect_err("too big")
            .to_string();
        assert!(err.contains("over SQS's limit"), "{err}");
        assert!(err.contains("claims=s3://BUCKET/PREFIX"), "{err}");
        let marked = encode_with(&letter, Status::Pending, true).expect("offloadable");
        assert!(marked.offload);
        assert_eq!(marked.body.len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn pointer_bodies_have_the_extended_clients_shape_and_are_recognised() {
        let body = pointer_body("b", "k/1");
        assert_eq!(
            body,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k/1"}]"#
        );
        let message = |body: &str, attr: &str| {
            Message::builder()
                .body(body)
                .message_attributes(attr, size_attribute(10).expect("attr"))
                .build()
        };
        assert_eq!(
            pointer_of(&message(&body, SIZE_ATTRIBUTE)),
            Some(("b".into(), "k/1".into()))
        );
        let repackaged = body.replace("software.", "awsv2.repackaged.software.");
        assert!(pointer_of(&message(&repackaged, LEGACY_SIZE_ATTRIBUTE)).is_some());
        // Without the size attribute a body that looks like a pointer is
        // just a body.
        assert_eq!(pointer_of(&message(&body, "other")), None);
        assert_eq!(pointer_of(&message("[1,2]", SIZE_ATTRIBUTE)), None);
    }
}
