//! Prometheus metrics: a tick over a real embedded store with two DLQs is
//! rendered with the right values, the processor's counters show up, and
//! the `/metrics` listener serves the same text.
//!
//! The recorder is global to the process: every test here uses its own DLQ
//! and topic names.

use chrono::Utc;
use dlq_core::process::{Input, ProcessConfig};
use dlq_core::store::{DlqStore as _, Entry, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_monitor::{History, Monitor, MonitorConfig};
use dlq_sqlite::{SqliteOptions, SqliteStore};

fn entries(dlq: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            dlq: dlq.into(),
            letter: DeadLetter::new(
                format!("id-{i}"),
                b"{}".to_vec(),
                &Failure::permanent("validate", "validation.x", "bad"),
            ),
            status: Status::Pending,
        })
        .collect()
}

/// The value of one series in the exposition text.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_tick_over_two_dlqs_is_rendered_with_their_values() {
    let handle = dlq_monitor::metrics::install().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("dlq.db"), SqliteOptions::default()).unwrap();
    store.append(&entries("dlq.metrics.a", 3)).unwrap();
    store.append(&entries("dlq.metrics.b", 7)).unwrap();
    store
        .settle(
            "dlq.metrics.b",
            &["id-0".to_owned(), "id-1".to_owned()],
            Status::Replayed,
        )
        .unwrap();
    store
        .settle("dlq.metrics.b", &["id-2".to_owned()], Status::Archived)
        .unwrap();
    let config = MonitorConfig::from_toml(
        r#"
        [[rule]]
        name = "metrics-size"
        kind = "size"
        dlq = "dlq.metrics.b"
        above = 3
        "#,
    )
    .unwrap();
    let mut monitor = Monitor::new(config, History::open_in_memory().unwrap()).unwrap();
    let samples_before = value(&handle.render(), "dlq_monitor_samples_total").unwrap_or(0.0);
    monitor.tick(&store, Utc::now()).unwrap();

    let text = handle.render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    assert_eq!(v(r#"dlq_pending_records{dlq="dlq.metrics.a"}"#), 3.0);
    assert_eq!(v(r#"dlq_pending_records{dlq="dlq.metrics.b"}"#), 4.0);
    assert_eq!(
        v(r#"dlq_dead_lettered_records_total{dlq="dlq.metrics.a"}"#),
        3.0
    );
    assert_eq!(
        v(r#"dlq_dead_lettered_records_total{dlq="dlq.metrics.b"}"#),
        7.0
    );
    assert_eq!(v(r#"dlq_replayed_records_total{dlq="dlq.metrics.b"}"#), 2.0);
    assert_eq!(v(r#"dlq_archived_records_total{dlq="dlq.metrics.b"}"#), 1.0);
    assert!(v(r#"dlq_oldest_pending_age_seconds{dlq="dlq.metrics.a"}"#) >= 0.0);
    assert_eq!(
        v(r#"dlq_alerts_firing{rule="metrics-size",dlq="dlq.metrics.b"}"#),
        1.0
    );
    assert!(v("dlq_monitor_samples_total") >= samples_before + 2.0);
    assert!(text.contains("# TYPE dlq_pending_records gauge"), "{text}");
    assert!(
        text.contains("# TYPE dlq_dead_lettered_records_total counter"),
        "{text}"
    );
    assert_eq!(
        dlq_monitor::metrics::render()
            .as_deref()
            .map(|t| t.contains("dlq.metrics.a")),
        Some(true)
    );

    // The DLQ shrinks: the alert stops firing, the gauge follows.
    let ids: Vec<String> = (2..7).map(|i| format!("id-{i}")).collect();
    store
        .settle("dlq.metrics.b", &ids, Status::Replayed)
        .unwrap();
    monitor.tick(&store, Utc::now()).unwrap();
    let text = handle.render();
    assert_eq!(
        value(&text, r#"dlq_pending_records{dlq="dlq.metrics.b"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            r#"dlq_alerts_firing{rule="metrics-size",dlq="dlq.metrics.b"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn the_file_processor_counts_what_it_does() {
    let handle = dlq_monitor::metrics::install().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "1\n2\nbad\n4\nflaky\n").unwrap();
    let mut store = SqliteStore::open(dir.path().join("dlq.db"), SqliteOptions::default()).unwrap();
    let mut config = ProcessConfig::new(
        Input::File(input),
        dir.path().join("out.ndjson"),
        "dlq.metrics.topic",
        "metrics.topic",
    );
    config.retry = dlq_core::RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(1),
        ..config.retry
    };
    let mut handler = |payload: &[u8], attempt: u32| -> Result<Vec<u8>, Failure> {
        match payload {
            b"bad" => Err(Failure::permanent("validate", "validation.x", "bad")),
            b"flaky" if attempt < 2 => Err(Failure::transient("sink", "sink.timeout", "slow")),
            p => Ok(p.to_vec()),
        }
    };
    let summary = dlq_core::process::run(&config, &mut handler, &mut store, None).unwrap();
    assert_eq!(
        (summary.delivered, summary.dead_lettered, summary.retries),
        (4, 1, 1)
    );

    let text = handle.render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    let label = r#"{topic="metrics.topic"}"#;
    assert_eq!(
        v(&format!("dlq_processor_processed_records_total{label}")),
        5.0
    );
    assert_eq!(
        v(&format!("dlq_processor_delivered_records_total{label}")),
        4.0
    );
    assert_eq!(
        v(&format!("dlq_processor_dead_lettered_records_total{label}")),
        1.0
    );
    assert_eq!(v(&format!("dlq_processor_retries_total{label}")), 1.0);
}

#[test]
fn the_listener_serves_metrics_and_nothing_else() {
    let handle = dlq_monitor::metrics::install().unwrap();
    metrics::gauge!("dlq_pending_records", "dlq" => "dlq.metrics.served").set(42.0);
    let server =
        dlq_monitor::metrics::serve("127.0.0.1:0".parse().unwrap(), handle.clone()).unwrap();
    let base = format!("http://{}", server.local_addr());
    let mut resp = ureq::get(format!("{base}/metrics")).call().unwrap();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(
        value(&body, r#"dlq_pending_records{dlq="dlq.metrics.served"}"#),
        Some(42.0)
    );
    let err = ureq::get(format!("{base}/other")).call().unwrap_err();
    assert!(matches!(err, ureq::Error::StatusCode(404)), "{err}");
    drop(server);
    assert!(
        ureq::get(format!("{base}/metrics")).call().is_err(),
        "stopped when dropped"
    );
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_monitor_exports() {
    let handle = dlq_monitor::metrics::install().unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../dashboards/grafana-dlq.json")).unwrap();
    // Make every series exist: two ticks (inflow), a retention (expiry
    // risk), a firing rule delivered to the log, a processor's counters.
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("dlq.db"), SqliteOptions::default()).unwrap();
    store.append(&entries("dlq.metrics.dashboard", 2)).unwrap();
    let config = MonitorConfig::from_toml(
        r#"
        [monitor]
        retention = "1d"
        [[rule]]
        name = "dashboard-size"
        kind = "size"
        dlq = "dlq.metrics.dashboard"
        above = 0
        "#,
    )
    .unwrap();
    let mut monitor = Monitor::new(config, History::open_in_memory().unwrap()).unwrap();
    monitor.tick(&store, Utc::now()).unwrap();
    monitor
        .tick(&store, Utc::now() + chrono::Duration::seconds(15))
        .unwrap();
    let c = dlq_core::process::ProcessorCounters::new("metrics.dashboard");
    for counter in [&c.processed, &c.delivered, &c.dead_lettered, &c.retries] {
        counter.increment(1);
    }
    let text = handle.render();

    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 10);
    let mut names = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("dlq_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            names.insert(name);
        }
    }
    for name in [
        "dlq_pending_records",
        "dlq_dead_lettered_records_total",
        "dlq_oldest_pending_age_seconds",
        "dlq_alerts_firing",
    ] {
        assert!(names.contains(name), "the dashboard does not chart {name}");
    }
    for name in &names {
        assert!(
            text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
            "the dashboard uses {name}, which is not exported:\n{text}"
        );
    }
}
