//! Claim checks: message bodies over SQS's 256 KiB limit kept in S3, the
//! message carrying a pointer to them, in the format of the Amazon SQS
//! Extended Client (Java `amazon-sqs-java-extended-client-lib`, Python
//! `sqs-extended-client`), so that either side reads the other's messages.
//!
//! A claim-checked message has the body
//! `["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"B","s3Key":"K"}]`
//! and a Number attribute `ExtendedPayloadSize` (older clients:
//! `SQSLargePayloadSize`) with the size of the object, which holds the body
//! as it would have been sent. Reading resolves such a message back to that
//! body (and drops the size attribute, which is no header of the record).
//!
//! Objects dlq writes are named after what they hold —
//! `PREFIX/QUEUE/<sha256 of the record id>` — so that an append retried
//! after a crash writes the same object again, not a second one. dlq never
//! deletes them (another reader of the queue may still need one): give the
//! bucket a lifecycle rule that expires them after the queue's retention.

use crate::client::Client;
use crate::codec::{
    LEGACY_SIZE_ATTRIBUTE, SIZE_ATTRIBUTE, pointer_body, pointer_of, size_attribute,
};
use crate::config::ClaimsConfig;
use crate::errors::Result;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use std::collections::HashMap;

/// The key of the object of `name` (a record id, or a replay's id) sent to
/// `queue`.
pub fn object_key(claims: &ClaimsConfig, queue: &str, name: &str) -> String {
    let digest = dlq_core::envelope::sha256_hex(name.as_bytes());
    if claims.prefix.is_empty() {
        format!("{queue}/{digest}")
    } else {
        format!("{}/{queue}/{digest}", claims.prefix)
    }
}

/// Puts `body` in S3 and replaces it by a pointer to it, adding the size
/// attribute.
///
/// # Errors
///
/// S3 refused the object (the message is then not sent).
pub fn offload(
    client: &Client,
    claims: &ClaimsConfig,
    key: &str,
    body: &mut String,
    attributes: &mut HashMap<String, MessageAttributeValue>,
) -> Result<()> {
    let bytes = std::mem::take(body).into_bytes();
    let len = bytes.len();
    client.put_object(&claims.bucket, key, bytes)?;
    attributes.insert(SIZE_ATTRIBUTE.to_owned(), size_attribute(len)?);
    *body = pointer_body(&claims.bucket, key);
    Ok(())
}

/// Replaces the body of a claim-checked message by the object it points
/// to. An object that is gone leaves the pointer as the body (with a
/// warning): the message is still read, nothing is lost that was there.
///
/// # Errors
///
/// S3 failed otherwise (the pass stops; the message stays in its queue).
pub fn resolve(client: &Client, m: &mut Message) -> Result<()> {
    let Some((bucket, key)) = pointer_of(m) else {
        return Ok(());
    };
    let Some(bytes) = client.get_object(&bucket, &key)? else {
        tracing::warn!(
            message_id = m.message_id().unwrap_or_default(),
            bucket,
            key,
            "the S3 object of a claim-checked message is gone; its pointer stays the body"
        );
        return Ok(());
    };
    let body = String::from_utf8(bytes).unwrap_or_else(|e| {
        // The Extended Clients store text bodies; anything else is not
        // theirs, and is kept as close to its bytes as text allows.
        tracing::warn!(bucket, key, "a claim-checked body is not UTF-8 text");
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    });
    m.body = Some(body);
    if let Some(attrs) = m.message_attributes.as_mut() {
        attrs.remove(SIZE_ATTRIBUTE);
        attrs.remove(LEGACY_SIZE_ATTRIBUTE);
    }
    Ok(())
}
