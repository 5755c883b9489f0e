//! Alert notifications end to end: a monitor over a real embedded store
//! (SQLite file) whose DLQ grows past a threshold and shrinks again, with
//! webhook receivers started by the test on 127.0.0.1. Each receiver must
//! get exactly one notification per state change; a receiver that is down
//! must not stop the monitor, and gets its notifications, in order, once it
//! is back. Webhook URLs (which carry tokens) must not leak into errors or
//! logs.

use chrono::{DateTime, Utc};
use dlq_core::store::{DlqStore as _, Entry, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_monitor::{History, Monitor, MonitorConfig, Transition};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const DLQ: &str = "dlq.rss.events";
const TOKEN: &str = "T0KEN-7f3a9c0d1e4b5a67";

/// A webhook receiver on 127.0.0.1: records each POST's path and JSON body.
struct Receiver {
    server: Arc<tiny_http::Server>,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Receiver {
    fn start(addr: &str) -> Receiver {
        let server = Arc::new(tiny_http::Server::http(addr).expect("bind the receiver"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (Arc::clone(&server), Arc::clone(&got));
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                g.lock().unwrap().push((req.url().to_owned(), json));
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Receiver {
            server,
            got,
            thread: Some(thread),
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}/{TOKEN}", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn dead_letters(from: usize, n: usize) -> Vec<Entry> {
    (from..from + n)
        .map(|i| Entry {
            dlq: DLQ.into(),
            letter: DeadLetter::new(
                format!("file:rss:{i}"),
                format!(r#"{{"title":"t{i}"}}"#).into_bytes(),
                &Failure::permanent("validate", "validation.missing_field", "no url"),
            ),
            status: Status::Pending,
        })
        .collect()
}

fn config(env: BTreeMap<&'static str, String>) -> MonitorConfig {
    MonitorConfig::from_toml_with_env(
        r#"
        [sink.ops]
        kind = "webhook"
        url_env = "OPS_HOOK"
        timeout = "2s"

        [sink.chat]
        kind = "slack"
        url_env = "CHAT_HOOK"
        timeout = "2s"

        [sink.pager]
        kind = "webhook"
        url_env = "PAGER_HOOK"
        timeout = "2s"

        [[rule]]
        name = "rss-backlog"
        kind = "size"
        dlq = "dlq.rss.events"
        above = 5
        sinks = ["log", "ops", "chat", "pager"]
        "#,
        |name| env.get(name).cloned(),
    )
    .expect("the config parses")
}

/// A `tracing` writer into a shared buffer, to read the logs back.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[test]
fn one_notification_per_state_change_in_json_and_slack_and_a_down_sink_catches_up() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dlq.db");
    let mut store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();

    let ops = Receiver::start("127.0.0.1:0");
    let chat = Receiver::start("127.0.0.1:0");
    let pager_port = free_port();
    let pager_url = format!("http://127.0.0.1:{pager_port}/pager/{TOKEN}");
    let env = BTreeMap::from([
        ("OPS_HOOK", ops.url("ops")),
        ("CHAT_HOOK", chat.url("chat")),
        ("PAGER_HOOK", pager_url),
    ]);
    // The history shares the store's file, as `dlq monitor` does.
    let mut monitor = Monitor::new(config(env.clone()), History::open(&db).unwrap()).unwrap();

    // Below the threshold: nothing.
    store.append(&dead_letters(0, 3)).unwrap();
    let r = monitor.tick(&store, at(0)).unwrap();
    assert!(r.notifications.is_empty());
    assert!(ops.bodies().is_empty());

    // Grows past it: one "firing" per sink, the pager is down.
    store.append(&dead_letters(3, 5)).unwrap();
    let r = monitor.tick(&store, at(15)).unwrap();
    assert_eq!(r.notifications.len(), 1);
    assert_eq!(r.notifications[0].state, Transition::Firing);
    let failed: Vec<&str> = r
        .deliveries
        .iter()
        .filter(|d| !d.delivered)
        .map(|d| d.sink.as_str())
        .collect();
    assert_eq!(failed, ["pager"]);
    assert_eq!(r.queued, 1, "the pager's notification waits");
    let error = r.deliveries.iter().find_map(|d| d.error.clone()).unwrap();
    assert!(!error.contains(TOKEN), "the URL's token leaked: {error}");

    // Keeps growing: still firing, no new notification (no `repeat`); the
    // pager is tried again and fails again, the monitor goes on.
    store.append(&dead_letters(8, 10)).unwrap();
    let r = monitor.tick(&store, at(30)).unwrap();
    assert!(r.notifications.is_empty());
    assert_eq!(r.samples[0].pending, 18);
    assert_eq!(r.queued, 1);
    assert_eq!(monitor.firing().len(), 1);

    // Records are replayed (settled): the DLQ shrinks below the threshold.
    let ids: Vec<String> = (0..16).map(|i| format!("file:rss:{i}")).collect();
    store.settle(DLQ, &ids, Status::Replayed).unwrap();
    let r = monitor.tick(&store, at(45)).unwrap();
    assert_eq!(r.notifications.len(), 1);
    assert_eq!(r.notifications[0].state, Transition::Resolved);
    assert_eq!(
        r.queued, 2,
        "firing and resolved wait for the pager, in order"
    );
    let r = monitor.tick(&store, at(60)).unwrap();
    assert!(r.notifications.is_empty());

    // Exactly one notification per state change, with the rule, the DLQ
    // and the value.
    let ops_got = ops.bodies();
    assert_eq!(ops_got.len(), 2, "{ops_got:?}");
    assert_eq!(ops_got[0]["rule"], "rss-backlog");
    assert_eq!(ops_got[0]["dlq"], DLQ);
    assert_eq!(ops_got[0]["state"], "firing");
    assert_eq!(ops_got[0]["kind"], "size");
    assert_eq!(ops_got[0]["value"], 8);
    assert_eq!(ops_got[0]["threshold"], 5);
    assert_eq!(ops_got[0]["at"], "2027-01-15T08:00:15Z");
    assert_eq!(ops_got[1]["state"], "resolved");
    assert_eq!(ops_got[1]["value"], 2);
    assert_eq!(
        ops.paths(),
        [format!("/ops/{TOKEN}"), format!("/ops/{TOKEN}")],
        "POSTed to the configured URL"
    );
    let chat_got = chat.bodies();
    assert_eq!(
        chat_got,
        [
            serde_json::json!({"text": "[FIRING] rss-backlog on dlq.rss.events: 8 pending records (threshold 5)"}),
            serde_json::json!({"text": "[RESOLVED] rss-backlog on dlq.rss.events: 2 pending records (threshold 5)"}),
        ]
    );

    // A restart does not notify again.
    drop(monitor);
    let mut monitor = Monitor::new(config(env), History::open(&db).unwrap()).unwrap();
    assert!(monitor.firing().is_empty());

    // The pager comes back: it gets both, in order, once.
    let pager = Receiver::start(&format!("127.0.0.1:{pager_port}"));
    let r = monitor.tick(&store, at(75)).unwrap();
    assert_eq!(r.queued, 0);
    let states: Vec<Value> = pager.bodies().iter().map(|b| b["state"].clone()).collect();
    assert_eq!(states, ["firing", "resolved"]);
    monitor.tick(&store, at(90)).unwrap();
    assert_eq!(pager.bodies().len(), 2);
    assert_eq!(ops.bodies().len(), 2);
    assert_eq!(chat.bodies().len(), 2);

    // The log sink logged both changes, and no log line holds a token.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("[FIRING] rss-backlog on dlq.rss.events: 8 pending records"),
        "{text}"
    );
    assert!(text.contains("[RESOLVED] rss-backlog"), "{text}");
    assert!(text.contains("alert notification not delivered"), "{text}");
    assert!(
        !text.contains(TOKEN),
        "a webhook token leaked into the logs:\n{text}"
    );
}

#[test]
fn repeat_notifies_again_while_firing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dlq.db");
    let mut store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let hook = Receiver::start("127.0.0.1:0");
    let url = hook.url("hook");
    let config = MonitorConfig::from_toml_with_env(
        r#"
        [sink.hook]
        kind = "webhook"
        url_env = "HOOK"
        [[rule]]
        name = "any-size"
        kind = "size"
        above = 0
        repeat = "1m"
        sinks = ["hook"]
        "#,
        |_| Some(url.clone()),
    )
    .unwrap();
    let mut monitor =
        Monitor::new(config, History::open(dir.path().join("h.db")).unwrap()).unwrap();
    store.append(&dead_letters(0, 1)).unwrap();
    for s in [0, 15, 30, 45, 60, 75, 90, 105, 120] {
        monitor.tick(&store, at(s)).unwrap();
    }
    let states: Vec<Value> = hook.bodies().iter().map(|b| b["state"].clone()).collect();
    assert_eq!(states, ["firing", "repeat", "repeat"], "at 0, 60 and 120");
}
