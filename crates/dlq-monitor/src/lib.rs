//! dlq-monitor: watch dead letter queues, keep their history, alert on them.
//!
//! A DLQ that fills up unnoticed is a pipeline that silently drops work, and
//! a DLQ whose records outlive their retention loses them for good. This
//! crate samples every DLQ of any [`DlqStore`](dlq_core::DlqStore) (embedded
//! SQLite, Kafka, memory) — pending, total, inflow rate, age of the oldest
//! pending record, expiry risk — keeps the samples in SQLite for charts,
//! evaluates alert rules from a TOML config, notifies the log, JSON webhooks
//! and Slack-compatible webhooks, and exports Prometheus metrics.
//!
//! # Layout
//!
//! * [`config`]: [`MonitorConfig`] read from TOML, every problem reported at once;
//! * [`monitor`]: [`Monitor`], whose [`tick`](Monitor::tick) does one round
//!   at an injected instant (tests drive time by hand);
//! * [`history`]: [`History`], samples, alert state and the notification
//!   outbox in SQLite (`migrations/NNNN_*.sql`); it can share the embedded
//!   store's file;
//! * [`alert`]: the per (rule, DLQ) state machine — fires once, repeats at
//!   the rule's interval, resolves once;
//! * [`sink`]: notification bodies and delivery; URLs are secrets;
//! * [`metrics`]: the Prometheus recorder, [`metrics::render`], a tiny
//!   `/metrics` listener;
//! * [`duration`]: `15s`, `1h30m`, `7d`.
//!
//! Everything blocks (SQLite, HTTP with timeouts); async callers run a tick
//! in `spawn_blocking`. A [`Monitor`] is `Send`, not shared: an HTTP server
//! keeps it behind a mutex, or opens its own [`History`] on the same file to
//! read samples while the monitor writes.
//!
//! # Example
//!
//! ```
//! use chrono::{Duration, TimeZone as _, Utc};
//! use dlq_core::memory::MemoryStore;
//! use dlq_core::store::{DlqStore as _, Entry, Status};
//! use dlq_core::{DeadLetter, Failure};
//! use dlq_monitor::{History, Monitor, MonitorConfig, Transition};
//!
//! let config = MonitorConfig::from_toml(r#"
//!     [[rule]]
//!     name = "backlog"
//!     kind = "size"
//!     above = 1
//! "#)?;
//! let mut monitor = Monitor::new(config, History::open_in_memory()?)?;
//!
//! let mut store = MemoryStore::new();
//! let failure = Failure::permanent("validate", "validation.price_out_of_range", "price 1.7");
//! let entries: Vec<Entry> = (0..2)
//!     .map(|i| Entry {
//!         dlq: "dlq.polymarket.price_hourly".into(),
//!         letter: DeadLetter::new(format!("id-{i}"), br#"{"price":1.7}"#.to_vec(), &failure),
//!         status: Status::Pending,
//!     })
//!     .collect();
//! store.append(&entries)?;
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 29, 7, 0, 0).unwrap();
//! let report = monitor.tick(&store, now)?;
//! assert_eq!(report.samples[0].pending, 2);
//! assert_eq!(report.notifications[0].state, Transition::Firing);
//! // Still above the threshold: no second notification.
//! assert!(monitor.tick(&store, now + Duration::seconds(15))?.notifications.is_empty());
//! assert_eq!(monitor.firing()[0].dlq, "dlq.polymarket.price_hourly");
//! let samples = monitor.history().samples("dlq.polymarket.price_hourly", now)?;
//! assert_eq!(samples.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod alert;
pub mod config;
pub mod duration;
pub mod history;
pub mod metrics;
pub mod monitor;
pub mod sink;

pub use alert::{AlertKey, AlertState, Transition};
pub use config::{ConfigError, MonitorConfig, Problem, Rule, RuleKind, SinkConfig, SinkKind};
pub use duration::{format_duration, parse_duration};
pub use history::{History, Sample};
pub use monitor::{
    Delivery, FiringAlert, Monitor, RetentionSource, StoreGauge, StoreGaugeSource, TickReport,
};
pub use sink::Notification;

/// What can go wrong while monitoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is unusable (every problem is listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The history database failed.
    #[error("monitor history {path}: {op}: {source}")]
    History {
        /// The file (or `:memory:`).
        path: String,
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The history was written by a newer dlq-monitor.
    #[error(
        "monitor history {path} has schema version {version}, newer than this dlq-monitor \
         knows; upgrade dlq, or point monitor.history at another file"
    )]
    NewerHistory {
        /// The file.
        path: String,
        /// Its version.
        version: i64,
    },
    /// The store's stats (or records, for the expiry risk) could not be read.
    #[error("reading the DLQ store: {0}")]
    Store(#[from] dlq_core::store::StoreError),
    /// The metrics recorder or listener could not be set up.
    #[error("metrics: {0}")]
    Metrics(String),
}

impl Error {
    /// Whether the same call may succeed later (a busy database, a store
    /// that is unreachable for now).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Store(e) => e.is_retriable(),
            Error::History { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// Result of monitor operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A number for people and JSON: whole numbers without a fraction,
/// others with at most two decimals.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(1.0 / 3.0), "0.33");
        assert_eq!(format_number(0.0), "0");
    }

    #[test]
    fn the_monitor_is_send() {
        fn send<T: Send>() {}
        send::<Monitor>();
        send::<History>();
    }
}
