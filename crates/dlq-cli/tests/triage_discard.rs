//! `dlq analyze`'s triage of records that carry no verdict (seed-format and
//! raw records, imported, and those `dlq demo` shows), and `dlq discard`:
//! the real binary on the embedded SQLite store.

mod common;

use common::env::Env;
use serde_json::Value;

/// Imports seed-format lines `(error, event id)` into `dlq`.
fn import_seed(env: &Env, dlq: &str, records: &[(&str, &str)]) {
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
    std::fs::write(env.path("seed.ndjson"), text).expect("write");
    let report = env.json(&["import", "--input", "seed.ndjson", "--dlq", dlq]);
    assert_eq!(report["imported"], records.len());
}

const TIMED_OUT: &str = "Message production error: MessageTimedOut (Local: Message timed out)";

#[test]
fn analyze_of_imported_seed_records_shows_triaged_classes_verdicts_and_rules() {
    let env = Env::new();
    import_seed(
        &env,
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

/// `dlq demo` shows the triage of the seed's own format: the records it
/// writes as the MarketLag Lambda does get classes and verdicts, and
/// importing its file gives the groups it showed.
#[test]
fn the_demo_triages_seed_format_records_and_its_file_imports_to_the_same_groups() {
    let env = Env::new();
    let v = env.json(&["demo", "--records", "200", "--dir", "demo"]);
    let seed = &v["seed_format"];
    assert_eq!(seed["records"], 11, "{seed:#}");
    let summary = |groups: &Value| -> Vec<(String, String, String, u64)> {
        let mut s: Vec<_> = groups
            .as_array()
            .expect("groups")
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
        s.sort();
        s
    };
    let shown = summary(&seed["groups"]);
    for (class, verdict, rule, count) in [
        (
            "kafka.delivery_timeout",
            "transient",
            "kafka.message_timed_out",
            3,
        ),
        ("http.throttled", "transient", "http.too_many_requests", 2),
        ("db.deadlock", "transient", "db.deadlock", 2),
        ("decode.wrong_type", "permanent", "decode.type", 2),
        ("db.duplicate_key", "duplicate", "db.duplicate_key", 1),
        ("auth.credentials", "configuration", "auth.credentials", 1),
    ] {
        assert!(
            shown.contains(&(class.into(), verdict.into(), rule.into(), count)),
            "no group ({class}, {verdict}, {rule}, {count}) in {shown:#?}"
        );
    }
    assert!(shown.iter().all(|g| g.1 != "unknown"), "{shown:#?}");
    // The demo's JSON and the store agree: the seed records are not in it.
    let stats = env.json(&["stats"]);
    assert!(
        stats["dlqs"]
            .as_array()
            .expect("dlqs")
            .iter()
            .all(|d| d["dlq"] != "dlq.imported"),
        "{stats:#}"
    );
    let file = seed["file"].as_str().expect("file");
    let report = env.json(&["import", "--input", file]);
    assert_eq!(report["by_format"]["seed"], 11, "{report:#}");
    let analyzed = env.json(&["analyze", "--dlq", "dlq.imported"]);
    assert_eq!(summary(&analyzed["groups"]), shown);
    // The table shows it too.
    let out = env.ok(&["demo", "--records", "100", "--dir", "demo2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kafka.delivery_timeout") && text.contains("[kafka.message_timed_out]"),
        "{text}"
    );
}

#[test]
fn triage_rules_in_dlq_toml_come_before_the_shipped_ones() {
    let env = Env::new();
    import_seed(
        &env,
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

/// The ids of `dlq`'s records with `status`, sorted.
fn ids_with_status(env: &Env, dlq: &str, status: &str) -> Vec<String> {
    let out = env.run(&[
        "--format", "json", "inspect", "--dlq", dlq, "--status", status, "--limit", "1000",
    ]);
    // 1: nothing matched.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut ids: Vec<String> = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["record"]["dlq"]["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Imports three timed-out and two malformed seed records; returns the
/// fingerprint filter of the timed-out group and its member ids.
fn seeded_for_discard(env: &Env) -> (String, Vec<String>) {
    import_seed(
        env,
        "dlq.rss.events",
        &[
            (TIMED_OUT, "e1"),
            (TIMED_OUT, "e2"),
            (TIMED_OUT, "e3"),
            (
                "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
                "e4",
            ),
            (
                "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
                "e5",
            ),
        ],
    );
    let report = env.json(&["analyze", "--dlq", "dlq.rss.events", "--members"]);
    let group = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["verdict_rule"] == "kafka.message_timed_out")
        .expect("timed-out group")
        .clone();
    let mut members: Vec<String> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    members.sort();
    assert_eq!(members.len(), 3);
    (
        group["replay_filter"].as_str().expect("filter").to_owned(),
        members,
    )
}

#[test]
fn a_discard_dry_run_lists_the_selection_and_changes_and_audits_nothing() {
    let env = Env::new();
    let (filter, members) = seeded_for_discard(&env);
    let before = ids_with_status(&env, "dlq.rss.events", "pending");
    let report = env.json(&[
        "discard",
        "--dlq",
        "dlq.rss.events",
        "--filter",
        &filter,
        "--dry-run",
    ]);
    assert_eq!(report["selected"], 3);
    assert_eq!(report["discarded"], 0);
    let mut listed: Vec<String> = report["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, members);
    assert_eq!(ids_with_status(&env, "dlq.rss.events", "pending"), before);
    assert!(ids_with_status(&env, "dlq.rss.events", "discarded").is_empty());
    assert!(!env.path("dlq-audit.jsonl").exists());
}

#[test]
fn a_discard_settles_exactly_the_selected_records_and_audits_them_first() {
    let env = Env::new();
    let (filter, members) = seeded_for_discard(&env);
    let before = ids_with_status(&env, "dlq.rss.events", "pending");
    let out = env.ok(&[
        "--format",
        "json",
        "discard",
        "--dlq",
        "dlq.rss.events",
        "--filter",
        &filter,
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (report["selected"].as_u64(), report["discarded"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dlq-audit.jsonl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ids_with_status(&env, "dlq.rss.events", "discarded"),
        members
    );
    let rest: Vec<String> = before
        .iter()
        .filter(|id| !members.contains(id))
        .cloned()
        .collect();
    assert_eq!(rest.len(), 2);
    assert_eq!(ids_with_status(&env, "dlq.rss.events", "pending"), rest);

    // One audit line, in the format of `dlq serve`'s log.
    let audit = std::fs::read_to_string(env.path("dlq-audit.jsonl")).expect("audit log");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{audit}");
    let e = &lines[0];
    assert_eq!(e["action"], "discard");
    assert_eq!(e["dlq"], "dlq.rss.events");
    assert_eq!(e["actor"]["role"], "operator");
    assert!(
        e["actor"]["label"]
            .as_str()
            .expect("label")
            .starts_with("cli:"),
        "{e}"
    );
    assert_eq!(e["details"]["count"], 3);
    assert_eq!(e["details"]["filter"], filter.as_str());
    let mut audited: Vec<String> = e["details"]["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    audited.sort();
    assert_eq!(audited, members);

    // The same discard again finds nothing: exit code 1, nothing audited.
    let again = env.run(&["discard", "--dlq", "dlq.rss.events", "--filter", &filter]);
    assert_eq!(again.status.code(), Some(1));
    let audit = std::fs::read_to_string(env.path("dlq-audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().count(), 1);
}

#[test]
fn a_discard_by_ids_with_a_limit_settles_no_more_and_reports_unknown_ids() {
    let env = Env::new();
    let (_, members) = seeded_for_discard(&env);
    let ids = format!("{},{},nope", members[0], members[1]);
    let report = env.json(&[
        "discard",
        "--dlq",
        "dlq.rss.events",
        "--id",
        &ids,
        "--limit",
        "1",
    ]);
    assert_eq!(report["discarded"], 1);
    assert_eq!(report["not_found"], serde_json::json!(["nope"]));
    assert_eq!(
        ids_with_status(&env, "dlq.rss.events", "discarded"),
        vec![members[0].clone()]
    );
}

#[test]
fn a_discard_must_say_what_and_is_not_carried_out_when_it_cannot_be_audited() {
    let env = Env::new();
    let (filter, _) = seeded_for_discard(&env);
    let before = ids_with_status(&env, "dlq.rss.events", "pending");
    let out = env.run(&["discard", "--dlq", "dlq.rss.events"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("say what to discard"));
    let out = env.run(&[
        "discard",
        "--dlq",
        "dlq.rss.events",
        "--all",
        "--status",
        "replayed",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only pending and parked"));

    // The audit log named in dlq.toml's [serve] section is a directory:
    // the discard fails and settles nothing.
    std::fs::create_dir(env.path("audit-dir")).expect("mkdir");
    std::fs::write(env.path("dlq.toml"), "[serve]\naudit_log = \"audit-dir\"\n").expect("write");
    let out = env.run(&["discard", "--dlq", "dlq.rss.events", "--filter", &filter]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ids_with_status(&env, "dlq.rss.events", "pending"), before);

    // A usable [serve] audit_log is where the entry goes.
    std::fs::write(
        env.path("dlq.toml"),
        "[serve]\naudit_log = \"logs/audit.jsonl\"\n",
    )
    .expect("write");
    env.ok(&["discard", "--dlq", "dlq.rss.events", "--all"]);
    assert!(ids_with_status(&env, "dlq.rss.events", "pending").is_empty());
    let audit = std::fs::read_to_string(env.path("logs/audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().count(), 1);
}
