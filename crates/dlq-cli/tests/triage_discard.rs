//! `dlq analyze`'s triage of records that carry no verdict (seed-format and
//! raw records, imported), and `dlq discard`: the real binary on the
//! embedded SQLite store.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        let store = format!("sqlite://{}", self.path("dlq.db").display());
        Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--store", &store, "--no-progress"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DLQ_STORE")
            .output()
            .expect("run dlq")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Imports seed-format lines `(error, event id)` into `dlq`.
    fn import_seed(&self, dlq: &str, records: &[(&str, &str)]) {
        let text: String = records
            .iter()
            .map(|(error, id)| {
                serde_json::json!({
                    "original_record": {"event_id": id, "price": 0.4},
                    "error": error,
                    "timestamp": "2026-11-29T07:00:00Z",
                })
                .to_string()
                    + "\n"
            })
            .collect();
        std::fs::write(self.path("seed.ndjson"), text).expect("write");
        let report = self.json(&["import", "--input", "seed.ndjson", "--dlq", dlq]);
        assert_eq!(report["imported"], records.len());
    }
}

const TIMED_OUT: &str = "Message production error: MessageTimedOut (Local: Message timed out)";

#[test]
fn analyze_of_imported_seed_records_shows_triaged_classes_verdicts_and_rules() {
    let env = Env::new();
    env.import_seed(
        "dlq.rss.events",
        &[
            (TIMED_OUT, "e1"),
            (TIMED_OUT, "e2"),
            (TIMED_OUT, "e3"),
            ("HTTP 429 Too Many Requests", "e4"),
            (
                "ERROR: deadlock detected\nDETAIL: Process 4242 waits for ShareLock on transaction 981",
                "e5",
            ),
            (
                "java.lang.NumberFormatException: For input string: \"abc\"",
                "e6",
            ),
            (
                "duplicate key value violates unique constraint \"events_pkey\"",
                "e7",
            ),
            (
                "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
                "e8",
            ),
            ("the flux capacitor is unhappy", "e9"),
        ],
    );
    let report = env.json(&["analyze", "--dlq", "dlq.rss.events"]);
    let groups = report["groups"].as_array().expect("groups");
    let summary: Vec<(String, String, String, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["error_class"].as_str().expect("class").to_owned(),
                g["verdict"].as_str().expect("verdict").to_owned(),
                g["verdict_rule"].as_str().expect("rule").to_owned(),
                g["count"].as_u64().expect("count"),
            )
        })
        .collect();
    let expect = [
        (
            "kafka.delivery_timeout",
            "transient",
            "kafka.message_timed_out",
            3,
        ),
        ("http.throttled", "transient", "http.too_many_requests", 1),
        ("db.deadlock", "transient", "db.deadlock", 1),
        ("decode.wrong_type", "permanent", "decode.type", 1),
        ("db.duplicate_key", "duplicate", "db.duplicate_key", 1),
        ("auth.credentials", "configuration", "auth.credentials", 1),
        ("unknown", "unknown", "none", 1),
    ];
    for (class, verdict, rule, count) in expect {
        assert!(
            summary.contains(&(class.into(), verdict.into(), rule.into(), count)),
            "no group ({class}, {verdict}, {rule}, {count}) in {summary:#?}"
        );
    }
    assert_eq!(summary.len(), expect.len(), "{summary:#?}");
    let timed_out = groups
        .iter()
        .find(|g| g["verdict_rule"] == "kafka.message_timed_out")
        .expect("group");
    assert_eq!(timed_out["triaged"], true);
    assert!(
        timed_out["verdict_reason"]
            .as_str()
            .expect("reason")
            .contains("rule kafka.message_timed_out"),
        "{timed_out:#}"
    );
    // The table names the rule beside the verdict.
    let table = env.ok(&["analyze", "--dlq", "dlq.rss.events"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("transient [kafka.message_timed_out]"),
        "{text}"
    );
    // The group's filter selects its records (the fingerprint is the
    // records' own, whatever the triage).
    let filter = timed_out["replay_filter"].as_str().expect("filter");
    let inspected = env.json(&["inspect", "--dlq", "dlq.rss.events", "--filter", filter]);
    assert_eq!(inspected["records"].as_array().expect("records").len(), 3);
}

#[test]
fn triage_rules_in_dlq_toml_come_before_the_shipped_ones() {
    let env = Env::new();
    env.import_seed(
        "dlq.rss.events",
        &[(TIMED_OUT, "e1"), ("ACME-7 quota exhausted", "e2")],
    );
    std::fs::write(
        env.path("dlq.toml"),
        r#"
[monitor]
interval = "30s"

[[triage.rule]]
name = "acme.quota"
class = "acme.quota"
verdict = "transient"
patterns = ['ACME-\d+ quota']
"#,
    )
    .expect("write");
    // ./dlq.toml is read without --config.
    let report = env.json(&["analyze"]);
    let rules: Vec<&str> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["verdict_rule"].as_str().expect("rule"))
        .collect();
    assert!(rules.contains(&"acme.quota"), "{rules:?}");
    assert!(rules.contains(&"kafka.message_timed_out"), "{rules:?}");
    // The same file still suits `dlq monitor`, which ignores [triage].
    env.ok(&["monitor", "--once", "--config", "dlq.toml"]);

    // A broken rule set: every problem, and no analysis.
    std::fs::write(
        env.path("bad.toml"),
        "[triage]\ncolour = 1\n[[triage.rule]]\nname = \"x\"\nclass = \"x\"\nverdict = \"maybe\"\npatterns = [\"y\"]\n[[triage.rule]]\nname = \"z\"\nclass = \"z\"\nverdict = \"transient\"\npatterns = [\"(\"]\n",
    )
    .expect("write");
    let out = env.run(&["analyze", "--config", "bad.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "triage.colour",
        "triage.rule[0]",
        "triage.rule[1]",
        "patterns[0]",
    ] {
        assert!(err.contains(needle), "{needle} missing in: {err}");
    }
    // A --config that does not exist is an error, not the shipped rules.
    let out = env.run(&["analyze", "--config", "missing.toml"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.toml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
