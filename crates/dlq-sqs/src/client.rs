//! Raw SQS I/O: one SDK client on a runtime of its own, called blocking
//! (the [`dlq_core::DlqStore`] trait is synchronous).

use crate::config::SqsConfig;
use crate::errors::{self, Result};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use dlq_core::store::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;

/// SQS's most messages per receive and per batch request.
pub const BATCH: usize = 10;

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The body (SQS text, at least one character).
    pub body: String,
    /// Message attributes by name.
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// FIFO queues: the message group.
    pub group: Option<String>,
    /// FIFO queues: the deduplication id.
    pub dedup: Option<String>,
}

/// The SQS client.
pub struct Client {
    /// `None` only while dropping (see `Drop`).
    rt: Option<tokio::runtime::Runtime>,
    sqs: aws_sdk_sqs::Client,
    /// For claim checks (bodies over SQS's limit, in S3).
    s3: aws_sdk_s3::Client,
    urls: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the region and endpoint of `config`; credentials from
    /// the standard AWS chain.
    pub fn new(config: &SqsConfig) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| errors::local(format!("starting the SQS client runtime: {e}")))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = rt.block_on(loader.load());
        // S3-compatible servers (S3Proxy) answer the flexible checksum
        // headers of recent SDKs with NotImplemented: checksums only where
        // an operation requires them, as the S3 store does.
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(endpoint) = &config.s3_endpoint {
            s3 = s3.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(Client {
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            rt: Some(rt),
            urls: Mutex::new(HashMap::new()),
        })
    }

    /// Runs an SDK call to its end on the client's runtime.
    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match &self.rt {
            Some(rt) => rt.block_on(fut),
            None => unreachable!("the runtime is taken only in drop"),
        }
    }

    fn cached(&self, name: &str) -> Option<String> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, url: &str) {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), url.to_owned());
    }

    /// The URL of queue `name`, or `None` when there is no such queue.
    pub fn queue_url(&self, name: &str) -> Result<Option<String>> {
        if let Some(url) = self.cached(name) {
            return Ok(Some(url));
        }
        let out = self.block_on(self.sqs.get_queue_url().queue_name(name).send());
        match out {
            Ok(out) => {
                let url = out.queue_url().unwrap_or_default().to_owned();
                self.remember(name, &url);
                Ok(Some(url))
            }
            Err(e) if errors::is_no_such_queue(&e) => Ok(None),
            Err(e) => Err(errors::sdk(&format!("GetQueueUrl {name}"), e)),
        }
    }

    /// The URL of queue `name`, created when missing (a `.fifo` name as a
    /// FIFO queue).
    pub fn ensure_queue(&self, name: &str) -> Result<String> {
        if let Some(url) = self.queue_url(name)? {
            return Ok(url);
        }
        let mut req = self.sqs.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let out = self
            .block_on(req.send())
            .map_err(|e| errors::sdk(&format!("CreateQueue {name}"), e))?;
        let url = out.queue_url().unwrap_or_default().to_owned();
        self.remember(name, &url);
        Ok(url)
    }

    /// Sends messages, ten per request; returns their message ids in order.
    /// Any message SQS refuses fails the call (those before it were sent).
    pub fn send(&self, url: &str, messages: &[Outgoing]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(BATCH) {
            let mut req = self.sqs.send_message_batch().queue_url(url);
            for (i, m) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(Some(m.attributes.clone()))
                    .set_message_group_id(m.group.clone())
                    .set_message_deduplication_id(m.dedup.clone())
                    .build()
                    .map_err(|e| errors::local(format!("building a send request: {e}")))?;
                req = req.entries(entry);
            }
            let out = self
                .block_on(req.send())
                .map_err(|e| errors::sdk(&format!("SendMessageBatch {url}"), e))?;
            if let Some(failed) = out.failed().first() {
                return Err(errors::refused(
                    "SendMessageBatch",
                    failed.code(),
                    failed.message().unwrap_or_default(),
                    failed.sender_fault(),
                ));
            }
            let mut sent: Vec<(usize, String)> = out
                .successful()
                .iter()
                .map(|s| {
                    (
                        s.id().parse().unwrap_or(usize::MAX),
                        s.message_id().to_owned(),
                    )
                })
                .collect();
            sent.sort();
            ids.extend(sent.into_iter().map(|(_, id)| id));
        }
        Ok(ids)
    }

    /// Receives up to ten messages with every attribute, hiding them from
    /// other readers for `lease_secs`; never waits for messages to arrive.
    pub fn receive(&self, url: &str, lease_secs: i32) -> Result<Vec<Message>> {
        let out = self
            .block_on(
                self.sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(BATCH as i32)
                    .visibility_timeout(lease_secs)
                    .wait_time_seconds(0)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .message_attribute_names("All")
                    .send(),
            )
            .map_err(|e| errors::sdk(&format!("ReceiveMessage {url}"), e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes received messages by receipt handle, ten per request.
    pub fn delete(&self, url: &str, handles: &[String]) -> Result<()> {
        for chunk in handles.chunks(BATCH) {
            let mut req = self.sqs.delete_message_batch().queue_url(url);
            for (i, h) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .map_err(|e| errors::local(format!("building a delete request: {e}")))?;
                req = req.entries(entry);
            }
            let out = self
                .block_on(req.send())
                .map_err(|e| errors::sdk(&format!("DeleteMessageBatch {url}"), e))?;
            if let Some(failed) = out.failed().first() {
                return Err(errors::refused(
                    "DeleteMessageBatch",
                    failed.code(),
                    failed.message().unwrap_or_default(),
                    failed.sender_fault(),
                ));
            }
        }
        Ok(())
    }

    /// Makes received messages visible again at once, ten per request.
    pub fn release(&self, url: &str, handles: &[String]) -> Result<()> {
        for chunk in handles.chunks(BATCH) {
            let mut req = self.sqs.change_message_visibility_batch().queue_url(url);
            for (i, h) in chunk.iter().enumerate() {
                let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .map_err(|e| errors::local(format!("building a release request: {e}")))?;
                req = req.entries(entry);
            }
            // A message whose lease already ran out is visible anyway: a
            // failed entry needs no retry.
            self.block_on(req.send())
                .map_err(|e| errors::sdk(&format!("ChangeMessageVisibilityBatch {url}"), e))?;
        }
        Ok(())
    }

    /// Writes a claim-checked body to S3.
    pub fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
        let req = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(aws_sdk_s3::primitives::ByteStream::from(body));
        self.block_on(req.send())
            .map(drop)
            .map_err(|e| errors::s3(&format!("PutObject s3://{bucket}/{key}"), e))
    }

    /// Reads a claim-checked body from S3; `None` when the object is gone.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let req = self.s3.get_object().bucket(bucket).key(key);
        let what = format!("GetObject s3://{bucket}/{key}");
        self.block_on(async {
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let missing = e.raw_response().map(|r| r.status().as_u16()) == Some(404)
                        || e.as_service_error().is_some_and(|s| s.is_no_such_key());
                    return if missing {
                        Ok(None)
                    } else {
                        Err(errors::s3(&what, e))
                    };
                }
            };
            let body = out.body.collect().await.map_err(|e| StoreError::Backend {
                backend: "sqs",
                message: format!("{what}: reading the body: {e}"),
                retryable: true,
            })?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    /// Every attribute of a queue.
    pub fn attributes(&self, url: &str) -> Result<HashMap<QueueAttributeName, String>> {
        let out = self
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::All)
                    .send(),
            )
            .map_err(|e| errors::sdk(&format!("GetQueueAttributes {url}"), e))?;
        Ok(out.attributes.unwrap_or_default())
    }

    /// The URLs of every queue whose name starts with `prefix`.
    pub fn list_queues(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .block_on(
                    self.sqs
                        .list_queues()
                        .set_queue_name_prefix(prefix.map(str::to_owned))
                        .max_results(1000)
                        .set_next_token(token)
                        .send(),
                )
                .map_err(|e| errors::sdk("ListQueues", e))?;
            urls.extend(out.queue_urls.unwrap_or_default());
            token = out.next_token;
            if token.is_none() {
                return Ok(urls);
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A store may be dropped on an async thread (`dlq serve` shutting
        // down), where dropping a runtime the usual way panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The queue name at the end of a queue URL.
pub fn name_of_url(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_dropped_on_an_async_thread_does_not_panic() {
        let client = Client::new(&SqsConfig::new("us-east-1")).expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async move { drop(client) });
    }

    #[test]
    fn the_name_of_a_queue_url_is_its_last_segment() {
        assert_eq!(
            name_of_url("http://127.0.0.1:19324/000000000000/orders-dlq"),
            "orders-dlq"
        );
    }
}
