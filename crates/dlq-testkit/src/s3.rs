//! Tests against the real S3-compatible server that `scripts/test.sh`
//! starts (S3Proxy, `scripts/s3.sh`): its endpoint, its test credentials,
//! a bucket, and reading objects back.

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

/// The access key S3Proxy of `scripts/s3.sh` accepts (test credentials).
pub const ACCESS_KEY_ID: &str = "dlqtest";
/// Its secret (test credentials).
pub const SECRET_ACCESS_KEY: &str = "dlqtest-secret";
/// The bucket the tests share; each test works under its own prefix.
pub const BUCKET: &str = "dlq-tests";

/// The endpoint, or `None` (with a message) when no server was started;
/// under CI a missing server fails the test.
pub fn endpoint() -> Option<String> {
    match std::env::var("DLQ_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DLQ_S3_ENDPOINT is not set: run the tests with scripts/test.sh")
        }
        _ => {
            eprintln!(
                "skipped: no S3 server (run `scripts/s3.sh start` and set DLQ_S3_ENDPOINT, \
                 or run scripts/test.sh)"
            );
            None
        }
    }
}

/// A key prefix no other test uses.
pub fn prefix(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// The environment a `dlq` process needs to reach the server: the test
/// credentials and a region, as the standard AWS chain reads them.
pub fn env() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// An AWS SDK configuration with the test credentials.
pub fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "dlq-testkit"),
        ))
        .build()
}

/// An S3 client for the server (path-style, checksums only where required,
/// which S3Proxy needs).
pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&sdk_config())
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(fut)
}

/// Creates [`BUCKET`] unless it exists, and returns its name.
pub fn bucket(endpoint: &str) -> &'static str {
    let c = client(endpoint);
    block_on(async {
        if c.head_bucket().bucket(BUCKET).send().await.is_err() {
            match c.create_bucket().bucket(BUCKET).send().await {
                Ok(_) => {}
                // Another test created it in between.
                Err(e) if c.head_bucket().bucket(BUCKET).send().await.is_ok() => drop(e),
                Err(e) => panic!("creating bucket {BUCKET}: {e:?}"),
            }
        }
    });
    BUCKET
}

/// Every object key under `prefix` in `bucket`, in order (without the
/// directory markers, `…/`, that S3Proxy's filesystem backend lists).
pub fn list_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let c = client(endpoint);
    block_on(async {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = c
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| !k.ends_with('/'))
                    .map(str::to_owned),
            );
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break keys,
            }
        }
    })
}

/// The bytes of an object.
pub fn get_object(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    let c = client(endpoint);
    block_on(async {
        let out = c
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
        out.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    })
}

/// Writes an object.
pub fn put_object(endpoint: &str, bucket: &str, key: &str, body: Vec<u8>) {
    let c = client(endpoint);
    block_on(async {
        c.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    });
}
