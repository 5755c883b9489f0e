//! End-to-end tests of the `dlq` binary on the embedded SQLite store: each
//! one runs the real command line, as a user would, and checks the records.

mod common;

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::env::{Env, lines};

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut data = Vec::new();
    for l in lines {
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    std::fs::write(path, data).expect("write");
}

const GOOD_PRICE: &str = r#"{"event_id":"evt-1","market_id":"0x1111111111111111111111111111111111111111","question":"Will the Fed cut rates in December?","outcome":"Yes","price":0.42,"volume":1200.5,"timestamp":"2026-11-29T07:00:00Z"}"#;

fn good_price(i: usize) -> Vec<u8> {
    GOOD_PRICE
        .replace("evt-1", &format!("evt-{i}"))
        .into_bytes()
}

#[test]
fn demo_accounts_for_every_record() {
    let env = Env::new();
    let v = env.json(&["demo", "--records", "3000", "--seed", "11", "--dir", "demo"]);
    assert_eq!(v["records_in"], 6000);
    assert_eq!(v["lost"], 0, "{v:#}");
    assert_eq!(v["duplicates"], 0, "{v:#}");
    assert!(v["replayed"].as_u64().expect("replayed") > 0);
    assert!(v["parked"].as_u64().expect("parked") > 0);
    for dlq in ["dlq.rss.events", "dlq.polymarket.price_hourly"] {
        assert!(
            v["dlqs"][dlq].as_u64().expect(dlq) > 0,
            "{dlq} empty: {v:#}"
        );
    }
    let delivered = v["delivered"].as_u64().expect("delivered");
    let pending = v["pending"].as_u64().expect("pending");
    let parked = v["parked"].as_u64().expect("parked");
    assert_eq!(delivered + pending + parked, 6000, "{v:#}");
    // The store the demo used agrees with the demo's own numbers.
    let stats = env.json(&["stats"]);
    for s in stats["dlqs"].as_array().expect("dlqs") {
        let name = s["dlq"].as_str().expect("name");
        assert_eq!(s["pending"], v["dlqs"][name], "{name}");
    }
    // Transient failures are grouped as such.
    let groups = v["groups"].as_array().expect("groups");
    assert!(groups.iter().any(|g| g["verdict"] == "transient"));
    assert!(
        groups
            .iter()
            .any(|g| g["error_class"] == "validation.wrong_type")
    );
}

#[test]
fn seed_format_record_is_imported_and_inspected_intact() {
    let env = Env::new();
    let seed = r#"{"original_record": {"title": "Fed holds rates", "link": "https://example.com/a"}, "error": "Failed to send to primary topic", "timestamp": "2026-11-29T07:00:00.123456+00:00"}"#;
    std::fs::write(env.path("seed.ndjson"), format!("{seed}\n")).expect("write");
    let report = env.json(&[
        "import",
        "--input",
        "seed.ndjson",
        "--dlq",
        "dlq.rss.events",
    ]);
    assert_eq!(report["imported"], 1);
    assert_eq!(report["by_format"]["seed"], 1);
    let out = env.ok(&["--format", "json", "inspect", "--dlq", "dlq.rss.events"]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.contains(
            r#""original_record":{"title": "Fed holds rates", "link": "https://example.com/a"}"#
        ),
        "original record not byte-exact: {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    let record = &v["records"][0]["record"];
    assert_eq!(record["error"], "Failed to send to primary topic");
    // The seed's microseconds, as written.
    assert_eq!(record["timestamp"], "2026-11-29T07:00:00.123456Z");
    // Importing the same file again creates nothing new.
    let again = env.json(&[
        "import",
        "--input",
        "seed.ndjson",
        "--dlq",
        "dlq.rss.events",
    ]);
    assert_eq!(
        (again["imported"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
}

#[test]
fn random_binary_record_comes_back_byte_identical() {
    let env = Env::new();
    // Random non-UTF-8 bytes, without line breaks (a line is a record).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut binary: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state & 0xff) as u8
        })
        .filter(|&b| b != b'\n')
        .collect();
    binary.insert(0, 0xff);
    assert!(std::str::from_utf8(&binary).is_err());
    write_lines(&env.path("in.ndjson"), &[good_price(1), binary.clone()]);
    env.process_input();
    let dead = env.dlq_payloads("dlq.polymarket.price_hourly", "pending");
    assert_eq!(dead, vec![binary.clone()]);
    // And through the envelope export (base64 inside JSON).
    let out = env.ok(&["export", "--dlq", "dlq.polymarket.price_hourly"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("envelope");
    assert_eq!(v["dlq"]["payload_encoding"], "base64");
    assert_eq!(v["dlq"]["error_class"], "decode.invalid_utf8");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v["original_record"]["base64"].as_str().expect("b64"))
        .expect("decode");
    assert_eq!(decoded, binary);
}

#[test]
fn bad_input_is_dead_lettered_with_precise_classes_and_nothing_is_lost() {
    let env = Env::new();
    let malformed = br#"{"event_id":"evt-x","price":0.4"#.to_vec();
    let invalid_utf8 = b"{\"event_id\":\"evt-\xff\xfe\"}".to_vec();
    let empty = Vec::new();
    let mut huge = br#"{"event_id":"big","pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    huge.extend_from_slice(br#""}"#);
    let string_price = GOOD_PRICE
        .replace("0.42", "\"0.42\"")
        .replace("evt-1", "evt-s")
        .into_bytes();
    let input = vec![
        good_price(1),
        malformed.clone(),
        good_price(2),
        invalid_utf8.clone(),
        empty.clone(),
        huge.clone(),
        string_price.clone(),
        good_price(3),
    ];
    write_lines(&env.path("in.ndjson"), &input);
    let summary = env.json(&[
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
    ]);
    assert_eq!(summary["records_in"], 8);
    assert_eq!(summary["delivered"], 3);
    assert_eq!(summary["dead_lettered"], 5);
    assert_eq!(
        lines(&env.path("out.ndjson")),
        vec![good_price(1), good_price(2), good_price(3)]
    );
    let out = env.ok(&[
        "--format",
        "ndjson",
        "export",
        "--dlq",
        "dlq.polymarket.price_hourly",
    ]);
    let mut classes = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).expect("envelope");
        classes.push(v["dlq"]["error_class"].as_str().expect("class").to_owned());
    }
    classes.sort();
    assert_eq!(
        classes,
        vec![
            "decode.empty",
            "decode.invalid_utf8",
            "decode.malformed_json",
            "input.oversized",
            "validation.wrong_type"
        ]
    );
    let mut dead = env.dlq_payloads("dlq.polymarket.price_hourly", "pending");
    let mut want = vec![malformed, invalid_utf8, empty, huge, string_price];
    dead.sort();
    want.sort();
    assert!(
        dead == want,
        "dead-lettered payloads differ from the bad input lines"
    );
}

#[test]
fn replay_to_file_twice_writes_each_record_once() {
    let env = Env::new();
    let bad: Vec<Vec<u8>> = (0..25)
        .map(|i| {
            GOOD_PRICE
                .replace("0.42", "\"0.42\"")
                .replace("evt-1", &format!("evt-{i}"))
                .into_bytes()
        })
        .collect();
    write_lines(&env.path("in.ndjson"), &bad);
    env.process_input();
    let dry = env.json(&[
        "replay",
        "--dlq",
        "dlq.polymarket.price_hourly",
        "--to",
        "file:replayed.ndjson",
        "--fix",
        ".price |= tonumber",
        "--dry-run",
    ]);
    assert_eq!(dry["selected"], 25);
    assert_eq!(dry["previews"][0]["changed"], true);
    assert!(
        lines(&env.path("replayed.ndjson")).is_empty(),
        "a dry run writes nothing"
    );
    for round in 0..2 {
        let r = env.run(&[
            "--format",
            "json",
            "replay",
            "--dlq",
            "dlq.polymarket.price_hourly",
            "--to",
            "file:replayed.ndjson",
            "--fix",
            ".price |= tonumber",
        ]);
        let code = r.status.code();
        assert_eq!(
            code,
            Some(if round == 0 { 0 } else { 1 }),
            "round {round}: {r:?}"
        );
    }
    let replayed = lines(&env.path("replayed.ndjson"));
    assert_eq!(replayed.len(), 25);
    let unique: HashSet<&Vec<u8>> = replayed.iter().collect();
    assert_eq!(unique.len(), 25);
    assert!(
        replayed
            .iter()
            .all(|l| l.windows(12).any(|w| w == br#""price":0.42"#))
    );
    let stats = env.json(&["stats"]);
    assert_eq!(stats["dlqs"][0]["pending"], 0);
    assert_eq!(stats["dlqs"][0]["replayed"], 25);
}

#[test]
fn replay_through_the_pipeline_returns_failures_with_lineage_and_parks_them() {
    let env = Env::new();
    let bad = GOOD_PRICE.replace("0.42", "1.7").into_bytes();
    write_lines(&env.path("in.ndjson"), &[bad]);
    env.process_input();
    for round in 1..=3 {
        let r = env.json(&[
            "replay",
            "--dlq",
            "dlq.polymarket.price_hourly",
            "--to",
            "pipeline:out.ndjson",
            "--max-replays",
            "2",
        ]);
        assert_eq!(r["failed_again"], 1, "round {round}");
        assert_eq!(r["parked"], u64::from(round == 3), "round {round}");
    }
    let parked = env.json(&["inspect", "--status", "parked"]);
    let rec = &parked["records"][0]["record"];
    assert_eq!(rec["dlq"]["replays"], 3);
    assert_eq!(rec["dlq"]["error_class"], "validation.price_out_of_range");
    assert!(
        rec["dlq"]["replay_of"]
            .as_str()
            .expect("lineage")
            .ends_with("~r2")
    );
    assert!(lines(&env.path("out.ndjson")).is_empty());
    let r = env.run(&[
        "replay",
        "--dlq",
        "dlq.polymarket.price_hourly",
        "--to",
        "pipeline:out.ndjson",
    ]);
    assert_eq!(
        r.status.code(),
        Some(1),
        "nothing pending is left to replay"
    );
}

#[test]
fn process_killed_midway_and_rerun_loses_nothing() {
    let env = Env::new();
    env.ok(&[
        "generate",
        "--pipeline",
        "polymarket",
        "--records",
        "200000",
        "--seed",
        "5",
        "--output",
        "in.ndjson",
    ]);
    let input = lines(&env.path("in.ndjson"));
    assert_eq!(input.len(), 200_000);
    let args = [
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
        "--batch-size",
        "500",
        "--simulate-transient",
        "0.01",
        "--initial-backoff-ms",
        "20",
    ];
    let mut child = env
        .cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill once some output is durable, so the kill lands mid-run.
    let started = Instant::now();
    while std::fs::metadata(env.path("out.ndjson")).map_or(0, |m| m.len()) < 2_000_000 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let partial = lines(&env.path("out.ndjson")).len();
    assert!(
        partial < 190_000,
        "killed too late to mean anything ({partial})"
    );
    let resumed = env.json(&args[..]);
    assert!(
        resumed["resumed_from_line"].as_u64().expect("resume") > 0,
        "{resumed}"
    );
    let out = lines(&env.path("out.ndjson"));
    let dead = env.dlq_payloads("dlq.polymarket.price_hourly", "pending");
    let found: HashSet<&[u8]> = out.iter().chain(&dead).map(Vec::as_slice).collect();
    let missing = input
        .iter()
        .filter(|l| !found.contains(l.as_slice()))
        .count();
    assert_eq!(missing, 0, "records lost across the crash");
    assert_eq!(out.len() + dead.len(), input.len(), "no duplicates either");
}

#[test]
fn bad_filter_and_bad_store_are_errors_with_exit_code_2() {
    let env = Env::new();
    let r = env.run(&["inspect", "--filter", "error_clas == \"x\""]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown field"));
    let r = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["--store", "postgres://x", "stats"])
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a store URL"));
    let r = env.run(&["stats"]);
    assert_eq!(r.status.code(), Some(1), "an empty store has no DLQs");
}

#[test]
fn a_canary_password_never_appears_in_logs_errors_or_json() {
    const CANARY: &str = "canary-pw-7f3a9c";
    // Nothing listens on port 1: the store fails, with logs at debug level.
    let url = "kafka://127.0.0.1:1?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN\
               &sasl.username=ingest&timeout_ms=1500";
    for args in [
        vec!["--format", "json", "stats"],
        vec!["--format", "json", "inspect"],
        vec!["--format", "json", "replay", "--dlq", "dlq.rss.events"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--store", url, "--no-progress"])
            .args(&args)
            .env("DLQ_KAFKA_SASL_PASSWORD", CANARY)
            .env("DLQ_LOG", "debug")
            // Only the URL says where the (unreachable) cluster is.
            .env_remove("DLQ_KAFKA_BOOTSTRAP")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?} must fail");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(CANARY),
            "{args:?} leaked the password:\n{all}"
        );
        assert!(
            all.contains("error:"),
            "{args:?} said nothing useful:\n{all}"
        );
    }
    // A password in the URL is refused, and not echoed either.
    let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args([
            "--store",
            &format!("kafka://127.0.0.1:1?sasl.password={CANARY}"),
            "stats",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(CANARY), "{err}");
    assert!(
        err.contains("DLQ_KAFKA_SASL_PASSWORD"),
        "the error says where the password goes: {err}"
    );
}

#[test]
fn analyze_after_demo_groups_each_injected_failure_with_verdicts_fields_and_filters() {
    let env = Env::new();
    env.json(&["demo", "--records", "3000", "--dir", "demo"]);
    // The demo replays some groups; --status all analyzes every dead letter.
    let v = env.json(&["analyze", "--status", "all", "--members"]);
    let groups = v["groups"].as_array().expect("groups");
    let str_of = |g: &Value, k: &str| g[k].as_str().unwrap_or_default().to_owned();
    let of = |dlq: &str, class: &str| -> Vec<&Value> {
        groups
            .iter()
            .filter(|g| g["dlq"] == dlq && g["error_class"] == class)
            .collect()
    };
    const RSS: &str = "dlq.rss.events";
    const PRICES: &str = "dlq.polymarket.price_hourly";
    // Every kind of failure the generator injects (and the simulated outage)
    // is exactly one group: message variants inside a kind (which JSON token
    // was cut, which value was wrong) are templates' variables, not groups.
    let common = [
        "downstream.unavailable",
        "decode.malformed_json",
        "decode.invalid_utf8",
        "decode.not_an_object",
        "validation.missing_field",
        "validation.null_field",
        "validation.wrong_type",
        "validation.bad_timestamp",
    ];
    let only_rss = ["validation.bad_url"];
    let only_prices = [
        "validation.timestamp_not_hour_aligned",
        "validation.price_out_of_range",
        "validation.negative_volume",
        "validation.bad_market_id",
    ];
    for (dlq, own) in [(RSS, &only_rss[..]), (PRICES, &only_prices[..])] {
        let mut expected: Vec<&str> = common.iter().chain(own).copied().collect();
        expected.sort_unstable();
        let mut found: Vec<String> = groups
            .iter()
            .filter(|g| g["dlq"] == dlq)
            .map(|g| str_of(g, "error_class"))
            .collect();
        found.sort_unstable();
        assert_eq!(found, expected, "{dlq}: one group per injected kind: {v:#}");
    }
    assert_eq!(of(RSS, "decode.malformed_json").len(), 1);
    for g in groups {
        let class = str_of(g, "error_class");
        let expected = if class.starts_with("downstream.") {
            "transient"
        } else {
            "permanent"
        };
        assert_eq!(g["verdict"], expected, "{g:#}");
        assert!(!str_of(g, "verdict_reason").is_empty());
    }
    let wrong_price = of(PRICES, "validation.wrong_type")[0];
    let price = wrong_price["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["path"] == "price" && f["issue"] == "unexpected_type")
        .unwrap_or_else(|| panic!("no price finding: {wrong_price:#}"));
    assert_eq!(price["found"], "string");
    assert_eq!(price["expected"], "number");
    assert!(
        price["percent"].as_f64().expect("percent") >= 90.0,
        "{price:#}"
    );
    let range = of(PRICES, "validation.price_out_of_range")[0]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .any(|f| f["path"] == "price" && f["issue"] == "out_of_range");
    assert!(range, "{v:#}");

    // The replay filter selects exactly the group's members.
    let filter = str_of(wrong_price, "replay_filter");
    let inspected = env.json(&[
        "inspect", "--status", "all", "--limit", "100000", "--filter", &filter,
    ]);
    let mut selected: Vec<String> = inspected["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["record"]["dlq"]["id"].as_str().expect("id").to_owned())
        .collect();
    let mut members: Vec<String> = wrong_price["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    selected.sort();
    members.sort();
    assert_eq!(
        selected.len() as u64,
        wrong_price["count"].as_u64().expect("count")
    );
    assert_eq!(selected, members);

    // Every group's filter selects exactly its records, and a second
    // analysis, which continues from the persisted miners, keeps every
    // group's fingerprint and count.
    for g in groups {
        let picked = env.json(&[
            "inspect",
            "--status",
            "all",
            "--limit",
            "100000",
            "--filter",
            &str_of(g, "replay_filter"),
        ]);
        assert_eq!(
            picked["records"].as_array().expect("records").len() as u64,
            g["count"].as_u64().expect("count"),
            "{g:#}"
        );
    }
    let again = env.json(&["analyze", "--status", "all"]);
    let summary = |v: &Value| -> Vec<(String, u64)> {
        v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| (str_of(g, "fingerprint"), g["count"].as_u64().unwrap_or(0)))
            .collect()
    };
    assert_eq!(summary(&again), summary(&v));

    // --top, --format markdown and html.
    let top = env.json(&["analyze", "--status", "all", "--top", "2"]);
    assert_eq!(top["groups"].as_array().expect("groups").len(), 2);
    let html = env.ok(&["analyze", "--status", "all", "--format", "html"]);
    let html = String::from_utf8_lossy(&html.stdout);
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert_eq!(
        html.matches("<section class=\"group\"").count(),
        groups.len(),
        "one section per group"
    );
    assert!(html.contains("Content-Security-Policy"));
    assert!(!html.contains("<script"), "no script in the report");
    assert!(
        html.contains("&lt;QUOTED&gt;") && !html.contains("<QUOTED>"),
        "templates are escaped"
    );
    // Report formats are for analyze only.
    let refused = env.run(&["stats", "--format", "html"]);
    assert_eq!(refused.status.code(), Some(2));
    let md = env.ok(&["analyze", "--status", "all", "--format", "markdown"]);
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("`price` is a string in"), "{md}");
    assert!(md.contains(&filter), "{md}");
    // --since in the future selects nothing (exit code 1: nothing matched).
    let later = env.run(&[
        "analyze",
        "--status",
        "all",
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!(later.status.code(), Some(1));
}

// Issue #10, item 1 (h-fix): hostile filters, fixes and rates.

#[test]
fn a_filter_nested_too_deep_exits_2_naming_the_position() {
    let env = Env::new();
    let parens = format!("{}retryable{}", "(".repeat(10_000), ")".repeat(10_000));
    let nots = "! ".repeat(60_000) + "retryable";
    for (filter, position) in [(parens, 64), (nots, 128)] {
        let r = env.run(&["inspect", "--filter", &filter]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("invalid filter at character {position}"))
                && stderr.contains("nests deeper than 64 levels"),
            "{}",
            &stderr[..stderr.len().min(300)]
        );
        assert!(!stderr.contains("overflow"), "no stack overflow");
    }
}

/// Three string-priced records in `dlq.polymarket.price_hourly`.
fn three_string_prices(env: &Env) {
    let bad: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            GOOD_PRICE
                .replace("0.42", "\"0.42\"")
                .replace("evt-1", &format!("evt-{i}"))
                .into_bytes()
        })
        .collect();
    write_lines(&env.path("in.ndjson"), &bad);
    env.process_input();
}

#[test]
fn a_rate_outside_the_range_exits_2_and_a_dry_run_is_never_paced() {
    let env = Env::new();
    three_string_prices(&env);
    let replay = ["replay", "--dlq", "dlq.polymarket.price_hourly"];
    for rate in ["1e-300", "1e-10", "0", "-1", "2e9", "NaN", "inf"] {
        let rate_arg = format!("--rate={rate}");
        let r = env.run(&[&replay[..], &["--to", "file:r.ndjson", &rate_arg]].concat());
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "--rate {rate}: {stderr}");
        assert!(
            stderr.contains("between 0.001 and 1000000000 records per second"),
            "--rate {rate}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let r = env.run(
        &[
            &replay[..],
            &["--to", "file:r.ndjson", "--dry-run", "--rate", "1e-10"],
        ]
        .concat(),
    );
    assert_eq!(r.status.code(), Some(2), "validated in a dry run too");
    // Paced at the slowest rate, three records would take 2,000 s.
    let started = Instant::now();
    let dry = env.json(
        &[
            &replay[..],
            &["--to", "file:r.ndjson", "--dry-run", "--rate", "0.001"],
        ]
        .concat(),
    );
    assert_eq!(dry["previews"].as_array().map(Vec::len), Some(3));
    assert!(started.elapsed() < Duration::from_secs(60));
    let stats = env.json(&["stats"]);
    assert_eq!(stats["dlqs"][0]["pending"], 3);
}

#[test]
fn a_fix_over_its_budget_fails_per_record_and_leaves_the_records_pending() {
    let env = Env::new();
    three_string_prices(&env);
    let replay = [
        "replay",
        "--dlq",
        "dlq.polymarket.price_hourly",
        "--to",
        "file:r.ndjson",
    ];
    // Recursion without end: the stack is guarded, the process survives.
    let r = env.json(&[&replay[..], &["--fix", "def f: [f]; f"]].concat());
    assert_eq!(
        (r["selected"].as_u64(), r["replayed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(r["fix_failed"], 3, "{r:#}");
    assert_eq!(
        r["fix_errors"]["fix recursed too deep (the stack is nearly exhausted)"], 3,
        "{r:#}"
    );
    // A loop without end: the time budget ends it.
    let started = Instant::now();
    let r = env.json(
        &[
            &replay[..],
            &["--fix", "def f: f; f", "--fix-timeout-ms", "50"],
        ]
        .concat(),
    );
    assert_eq!(r["fix_failed"], 3, "{r:#}");
    let errors = r["fix_errors"].as_object().expect("fix_errors");
    assert!(
        errors.keys().all(
            |e| e == "fix timed out after 50 ms" || e.starts_with("fix exceeded its budget of")
        ),
        "{r:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // Output larger than allowed.
    let r = env.json(
        &[
            &replay[..],
            &[
                "--fix",
                r#".market_id * 1000"#,
                "--fix-max-output-bytes",
                "100",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        r["fix_errors"]["fix output is larger than 100 bytes"], 3,
        "{r:#}"
    );
    // Nothing was replayed; the records are still pending.
    let stats = env.json(&["stats"]);
    assert_eq!(stats["dlqs"][0]["pending"], 3, "{stats:#}");
    assert_eq!(stats["dlqs"][0]["replayed"], 0, "{stats:#}");
    let pending = env.json(&["inspect", "--status", "pending"]);
    assert_eq!(
        pending["records"].as_array().map(Vec::len),
        Some(3),
        "{pending:#}"
    );
    assert!(lines(&env.path("r.ndjson")).is_empty());
    // A fix nested too deep is refused before anything runs.
    let deep = "(".repeat(5000) + "." + &")".repeat(5000);
    let r = env.run(&[&replay[..], &["--fix", &deep]].concat());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fix nests deeper than 256 levels (at 1:257)"),
        "{stderr}"
    );
    // Limits out of range are refused.
    let r = env.run(&[&replay[..], &["--fix", ".", "--fix-timeout-ms", "0"]].concat());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the fix timeout must be from 1 to 60000 ms"),
        "{stderr}"
    );
    // A fix that works still does, with the same output.
    env.ok(&[&replay[..], &["--fix", ".price |= tonumber"]].concat());
    let replayed = lines(&env.path("r.ndjson"));
    assert_eq!(replayed.len(), 3);
    assert!(
        replayed
            .iter()
            .all(|l| l.windows(12).any(|w| w == br#""price":0.42"#))
    );
}

/// `[serve.replay_targets]` takes `kafka://HOST:PORT[/TOPIC]` from any
/// store and `sqs:QUEUE` on an SQS store; a malformed spec stops `dlq
/// serve` before it listens, naming the target and what is wrong, every
/// problem at once.
#[test]
fn serve_refuses_malformed_replay_targets_naming_each_problem() {
    let env = Env::new();
    let config = env.path("dlq.toml");
    std::fs::write(
        &config,
        "[serve]\n[serve.replay_targets]\n\
         good = \"kafka://127.0.0.1:9092/orders\"\n\
         each_source = \"kafka://127.0.0.1:9092,127.0.0.2:9093\"\n\
         no_broker = \"kafka:///orders\"\n\
         no_port = \"kafka://127.0.0.1/orders\"\n\
         bad_port = \"kafka://127.0.0.1:99999/orders\"\n\
         bad_topic = \"kafka://127.0.0.1:9092/or ders\"\n\
         secret = \"kafka://user:canary-pw@127.0.0.1:9092/orders\"\n\
         queue = \"sqs:orders\"\n",
    )
    .expect("config");
    let out = env
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .expect("dlq serve");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "serve.replay_targets.no_broker: \"kafka:///orders\": no broker address",
        "serve.replay_targets.no_port: \"kafka://127.0.0.1/orders\": broker \"127.0.0.1\" is not HOST:PORT",
        "serve.replay_targets.bad_port: \"kafka://127.0.0.1:99999/orders\": broker \"127.0.0.1:99999\" has no valid port",
        "serve.replay_targets.bad_topic: \"kafka://127.0.0.1:9092/or ders\": \"or ders\" is not a Kafka topic name",
        "serve.replay_targets.secret:",
        "serve.replay_targets.queue: \"sqs:orders\": sqs: targets need an sqs:// store",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("must not carry credentials"), "{err}");
    assert!(!err.contains("canary-pw"), "a secret in the error: {err}");
    assert!(
        !err.contains("replay_targets.good") && !err.contains("replay_targets.each_source"),
        "{err}"
    );

    // On an SQS store (no server needed: the config is checked first),
    // sqs:QUEUE takes a queue name, not a DLQ name or nothing.
    std::fs::write(
        &config,
        "[serve]\n[serve.replay_targets]\n\
         ok = \"sqs:orders-in\"\nfifo = \"sqs:orders.fifo\"\n\
         empty = \"sqs:\"\ndotted = \"sqs:orders.in\"\n",
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args([
            "--store",
            "sqs://us-east-1?endpoint=http://127.0.0.1:9",
            "serve",
        ])
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(env.dir.path())
        .env_remove("DLQ_STORE")
        .output()
        .expect("dlq serve");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "serve.replay_targets.empty: \"sqs:\": \"\" is not an SQS queue name",
        "serve.replay_targets.dotted: \"sqs:orders.in\": \"orders.in\" is not an SQS queue name",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("replay_targets.ok") && !err.contains("replay_targets.fifo"),
        "{err}"
    );
}
