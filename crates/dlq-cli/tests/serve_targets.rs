//! `dlq serve` replay jobs to an `sqs:QUEUE` target of
//! `[serve.replay_targets]`, against the real SQS-compatible server
//! (ElasticMQ, `DLQ_SQS_ENDPOINT`).

mod common;

use common::env::Env;
use serde_json::Value;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills `dlq serve` when the test ends, whatever happens.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the status line and the body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         X-DLQ-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_replays_an_sqs_dlq_to_an_sqs_queue_target_and_every_message_arrives_once() {
    let Some(endpoint) = dlq_testkit::sqs::endpoint() else {
        return;
    };
    let env = Env::new();
    let base = dlq_testkit::sqs::queue("serve");
    let (dlq, target) = (format!("{base}-dlq"), format!("{base}-in"));
    let store = format!(
        "sqs://us-east-1?endpoint={endpoint}&state={}&lease=2&prefix={base}",
        env.arg("index.db")
    );
    let dlq_cmd = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args(["--store", &store, "--no-progress"])
            .args(args)
            .current_dir(env.dir.path())
            .env_remove("DLQ_STORE");
        c
    };
    const N: usize = 12;
    let failure = dlq_core::Failure::permanent("validate", "validation.wrong_type", "price");
    let mut file = Vec::new();
    let mut want = Vec::new();
    for i in 0..N {
        let payload = format!(r#"{{"order":{i}}}"#);
        let l = dlq_core::DeadLetter::new(format!("o{i}"), payload.clone().into_bytes(), &failure);
        file.extend(
            dlq_core::envelope::encode(&l, &dlq_core::envelope::EncodeOptions::default())
                .expect("encode")
                .bytes,
        );
        file.push(b'\n');
        want.push(payload);
    }
    std::fs::write(env.path("dead.ndjson"), &file).expect("write");
    let out = dlq_cmd(&["import", "--input", "dead.ndjson", "--dlq", &dlq])
        .output()
        .expect("import");
    assert!(out.status.success(), "{out:?}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shared = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .load(),
    );
    let client = aws_sdk_sqs::Client::new(&shared);
    let url = rt
        .block_on(client.create_queue().queue_name(&target).send())
        .expect("create the target queue")
        .queue_url
        .expect("url");

    std::fs::write(
        env.path("dlq.toml"),
        format!("[serve]\naudit_log = \"audit.jsonl\"\n[serve.replay_targets]\nback = \"sqs:{target}\"\n"),
    )
    .expect("config");
    let operator = "operator-token-sqs-serve-0001";
    let mut child = dlq_cmd(&["serve", "--listen", "127.0.0.1:0", "--config", "dlq.toml"])
        .env("DLQ_OPERATOR_TOKEN", operator)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dlq serve");
    let stdout = child.stdout.take().expect("stdout");
    let _serving = Serving(child);
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the address");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let body = format!(r#"{{"dlq":"{dlq}","target":"back"}}"#);
    let (status, reply) = http(&addr, "POST", "/api/replays", operator, &body);
    assert!(
        status.contains(" 202 ") || status.contains(" 200 "),
        "{status} {reply}"
    );
    let job: Value = serde_json::from_str(&reply).expect("json");
    let job = job["job"]["id"].as_str().expect("job id").to_owned();
    let job_status = || -> Value {
        let (_, body) = http(&addr, "GET", &format!("/api/replays/{job}"), operator, "");
        serde_json::from_str::<Value>(&body).expect("json")["job"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job_status()["done"].as_bool().unwrap_or(false) {
        assert!(Instant::now() < deadline, "the replay did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = job_status();
    assert_eq!(
        (after["status"].as_str(), after["replayed"].as_u64()),
        (Some("done"), Some(N as u64)),
        "{after}"
    );

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < N && Instant::now() < deadline {
        let r = rt
            .block_on(
                client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send(),
            )
            .expect("receive");
        for m in r.messages() {
            got.push(m.body().unwrap_or_default().to_owned());
            rt.block_on(
                client
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send(),
            )
            .expect("delete");
        }
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every record once, in the target queue");
    let out = dlq_cmd(&["--format", "json", "stats", "--dlq", &dlq])
        .output()
        .expect("stats");
    let stats: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (
            stats["dlqs"][0]["pending"].as_u64(),
            stats["dlqs"][0]["sqs"]["visible"].as_u64()
        ),
        (Some(0), Some(0)),
        "settled and deleted from the DLQ queue: {stats}"
    );
}
