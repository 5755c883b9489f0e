//! Raw S3 I/O for the store: blocking calls over the async AWS SDK.
//!
//! The store's trait is synchronous, and may be called from inside another
//! async runtime (`dlq serve`): every request runs on this client's own
//! small Tokio runtime and the caller's thread waits for its answer on a
//! channel, which works from any thread.

use crate::config::S3Config;
use crate::errors::{self, BACKEND};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use dlq_core::store::{Result, StoreError};
use std::future::Future;

/// How a PUT treats an object that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// Overwrite it.
    Always,
    /// Only create (`If-None-Match: *`).
    IfAbsent,
}

/// What a conditional PUT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The object is ours.
    Yes,
    /// The condition failed: another writer's object is there.
    Conflict,
    /// The server refuses conditional writes (501 Not Implemented).
    Unconditional,
}

/// A bucket, reached through the AWS SDK.
#[derive(Debug)]
pub(crate) struct Client {
    sdk: aws_sdk_s3::Client,
    bucket: String,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which Tokio
        // forbids inside another runtime (a store dropped by `dlq serve`'s
        // async code): let its threads go in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Client {
    /// A client for `config`'s bucket with credentials and region from the
    /// standard AWS chain (or `sdk` when given).
    pub(crate) fn new(config: &S3Config, sdk: Option<aws_config::SdkConfig>) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dlq-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                message: format!("starting the S3 client's runtime: {e}"),
                retryable: false,
            })?;
        let sdk = match sdk {
            Some(sdk) => sdk,
            None => run(
                &runtime,
                load_sdk_config(config.region.clone(), config.endpoint.is_some()),
            )?,
        };
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            // S3-compatible servers (S3Proxy among them) answer the flexible
            // checksum headers of recent SDKs with NotImplemented: send and
            // check checksums only where an operation requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        let region = config
            .region
            .clone()
            .or_else(|| sdk.region().map(ToString::to_string))
            .or_else(|| config.endpoint.as_ref().map(|_| "us-east-1".to_owned()));
        match region {
            Some(r) => builder = builder.region(aws_sdk_s3::config::Region::new(r)),
            None => {
                return Err(StoreError::InvalidUrl {
                    url: config.url(),
                    reason: "no AWS region: add ?region=R or set AWS_REGION".into(),
                });
            }
        }
        Ok(Client {
            sdk: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            runtime: Some(runtime),
        })
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match &self.runtime {
            Some(runtime) => run(runtime, fut)?,
            None => Err(stopped()),
        }
    }

    /// Checks that the bucket exists and answers.
    pub(crate) fn check_bucket(&self) -> Result<()> {
        let req = self.sdk.head_bucket().bucket(&self.bucket);
        let bucket = self.bucket.clone();
        self.run(async move {
            req.send().await.map(drop).map_err(|e| {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404) {
                    StoreError::Backend {
                        backend: BACKEND,
                        message: format!("bucket {bucket:?} does not exist: create it first"),
                        retryable: false,
                    }
                } else {
                    errors::request("HeadBucket", &bucket, &e)
                }
            })
        })
    }

    /// The object at `key` and its ETag, or `None` when there is none.
    pub(crate) fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        let req = self.sdk.get_object().bucket(&self.bucket).key(key);
        let key = key.to_owned();
        self.run(async move {
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let missing = e.raw_response().map(|r| r.status().as_u16()) == Some(404)
                        || e.as_service_error().and_then(|s| s.code()) == Some("NoSuchKey");
                    return if missing {
                        Ok(None)
                    } else {
                        Err(errors::request("GetObject", &key, &e))
                    };
                }
            };
            let etag = out.e_tag().map(str::to_owned);
            let body = out.body.collect().await.map_err(|e| StoreError::Backend {
                backend: BACKEND,
                message: format!("GetObject {key:?}: reading the body: {e}"),
                retryable: true,
            })?;
            Ok(Some((body.into_bytes().to_vec(), etag)))
        })
    }

    /// Writes `body` at `key`.
    pub(crate) fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        mode: Put,
        content: Content,
    ) -> Result<Written> {
        let mut req = self
            .sdk
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content.content_type())
            .body(ByteStream::from(body));
        if mode == Put::IfAbsent {
            req = req.if_none_match("*");
        }
        let key = key.to_owned();
        self.run(async move {
            match req.send().await {
                Ok(_) => Ok(Written::Yes),
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    // 412: the object exists; 409: a concurrent conditional
                    // write to the same key is in progress (AWS).
                    if mode == Put::IfAbsent && matches!(status, Some(412 | 409)) {
                        Ok(Written::Conflict)
                    } else if mode == Put::IfAbsent && status == Some(501) {
                        Ok(Written::Unconditional)
                    } else {
                        Err(errors::request("PutObject", &key, &e))
                    }
                }
            }
        })
    }

    /// Deletes `key` (no error when it is not there).
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let req = self.sdk.delete_object().bucket(&self.bucket).key(key);
        let key = key.to_owned();
        self.run(async move {
            req.send()
                .await
                .map(drop)
                .map_err(|e| errors::request("DeleteObject", &key, &e))
        })
    }

    /// Whether `key` exists.
    pub(crate) fn exists(&self, key: &str) -> Result<bool> {
        let req = self.sdk.head_object().bucket(&self.bucket).key(key);
        let key = key.to_owned();
        self.run(async move {
            match req.send().await {
                Ok(_) => Ok(true),
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(false),
                Err(e) => Err(errors::request("HeadObject", &key, &e)),
            }
        })
    }

    /// The keys under `prefix` that sort after `start_after`, in order, every
    /// page of the listing.
    pub(crate) fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>> {
        let sdk = self.sdk.clone();
        let bucket = self.bucket.clone();
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.run(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = sdk.list_objects_v2().bucket(&bucket).prefix(&prefix);
                if let Some(t) = &token {
                    req = req.continuation_token(t);
                } else if let Some(s) = &start_after {
                    req = req.start_after(s);
                }
                let out = req
                    .send()
                    .await
                    .map_err(|e| errors::request("ListObjectsV2", &prefix, &e))?;
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            Ok(keys)
        })
    }
}

/// What an object holds, for its `Content-Type` / `Content-Encoding`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Content {
    /// Gzip-compressed NDJSON (a data object). Deliberately without
    /// `Content-Encoding: gzip`: HTTP clients would decompress on download
    /// and a `.gz` object would arrive as plain text; Athena, Spark and
    /// DuckDB go by the `.gz` name.
    GzipNdjson,
    /// Gzip-compressed JSON (a snapshot).
    GzipJson,
    /// JSON (a log entry, the snapshot hint).
    Json,
    /// Opaque bytes (a claim-check blob, a probe).
    Bytes,
}

impl Content {
    fn content_type(self) -> &'static str {
        match self {
            Content::GzipNdjson => "application/x-ndjson",
            Content::GzipJson | Content::Json => "application/json",
            Content::Bytes => "application/octet-stream",
        }
    }
}

/// The standard chain's configuration. Where the URL names a region, or an
/// endpoint (an S3-compatible server, for which a region is a formality),
/// the region is not looked up on the instance metadata service: off EC2
/// that lookup only waits and warns.
async fn load_sdk_config(region: Option<String>, endpoint: bool) -> aws_config::SdkConfig {
    use aws_config::meta::region::RegionProviderChain;
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let loader = match region {
        Some(r) => loader.region(aws_sdk_s3::config::Region::new(r)),
        None if endpoint => loader.region(
            RegionProviderChain::first_try(
                aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else("us-east-1"),
        ),
        None => loader,
    };
    loader.load().await
}

/// Runs a future on `runtime` and waits for it on this thread, from any
/// thread (also one of another runtime's).
fn run<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| stopped())
}

fn stopped() -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: "the S3 client's runtime stopped".into(),
        retryable: false,
    }
}
