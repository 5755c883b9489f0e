//! DLQ size history, firing alerts and `/metrics`: the seam for the monitor.
//!
//! The monitor (sampling history, alert rules, Prometheus metrics) plugs in
//! through [`MonitorView`]. Without one, the server keeps a small history of
//! its own ([`Sampler`]: each DLQ's size every few seconds, in memory, lost
//! on restart), reports no alerts, and renders a minimal `/metrics` from the
//! store's stats ([`render_metrics`]).

use chrono::{DateTime, Utc};
use dlq_core::store::DlqStats;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

/// The size of one DLQ at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizePoint {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// Pending records.
    pub pending: u64,
    /// Parked records.
    pub parked: u64,
    /// Every record the DLQ ever received.
    pub total: u64,
}

/// A firing alert, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlertView {
    /// The rule's name or expression, e.g. `dlq_size > 1000`.
    pub rule: String,
    /// The DLQ it fires for, if it is about one.
    pub dlq: Option<String>,
    /// `warning`, `critical`, … as the rule says.
    pub severity: String,
    /// The value that made it fire.
    pub value: f64,
    /// The threshold, where the rule has one.
    pub threshold: Option<f64>,
    /// Since when it fires.
    pub since: DateTime<Utc>,
    /// In words.
    pub message: String,
}

/// What the server needs from a monitor. Implemented by the monitor crate;
/// the calls must be cheap (they answer HTTP requests) and must not block
/// on the store for long.
pub trait MonitorView: Send + Sync {
    /// The size history of one DLQ since an instant, oldest first.
    fn size_history(&self, dlq: &str, since: DateTime<Utc>) -> Vec<SizePoint>;
    /// The alerts firing now.
    fn firing(&self) -> Vec<FiringAlertView>;
    /// The Prometheus text exposition served at `/metrics`.
    fn metrics_text(&self) -> String;
}

/// The built-in size history: a bounded ring of points per DLQ.
#[derive(Debug)]
pub struct Sampler {
    capacity: usize,
    points: Mutex<BTreeMap<String, VecDeque<SizePoint>>>,
}

impl Sampler {
    /// Keeps at most `capacity` points per DLQ.
    pub fn new(capacity: usize) -> Self {
        Sampler {
            capacity: capacity.max(1),
            points: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one sample of every DLQ.
    pub fn record(&self, stats: &[DlqStats], at: DateTime<Utc>) {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        for s in stats {
            let ring = points.entry(s.dlq.clone()).or_default();
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(SizePoint {
                at,
                pending: s.pending,
                parked: s.parked,
                total: s.total,
            });
        }
    }

    /// The points of one DLQ at or after `since`, oldest first.
    pub fn history(&self, dlq: &str, since: DateTime<Utc>) -> Vec<SizePoint> {
        let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        points
            .get(dlq)
            .map(|r| r.iter().filter(|p| p.at >= since).cloned().collect())
            .unwrap_or_default()
    }
}

/// A Prometheus label value, escaped as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The minimal `/metrics` text used without a monitor: pending and parked
/// records and the age of the oldest pending record, per DLQ.
pub fn render_metrics(stats: &[DlqStats], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    type Value = fn(&DlqStats, DateTime<Utc>) -> Option<f64>;
    let gauges: [(&str, &str, Value); 3] = [
        (
            "dlq_pending_records",
            "Records waiting in the DLQ.",
            |s, _| Some(s.pending as f64),
        ),
        (
            "dlq_parked_records",
            "Records parked after too many failed replays.",
            |s, _| Some(s.parked as f64),
        ),
        (
            "dlq_oldest_pending_age_seconds",
            "Age of the oldest pending record (0 when none is pending).",
            |s, now| {
                Some(
                    s.oldest_pending_age(now)
                        .map_or(0.0, |d| d.num_milliseconds().max(0) as f64 / 1000.0),
                )
            },
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in stats {
            if let Some(v) = value(s, now) {
                let _ = writeln!(out, "{name}{{dlq=\"{}\"}} {v}", label(&s.dlq));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(dlq: &str, pending: u64) -> DlqStats {
        DlqStats {
            pending,
            total: pending,
            ..DlqStats::empty(dlq)
        }
    }

    #[test]
    fn sampler_keeps_a_bounded_history_per_dlq() {
        let s = Sampler::new(2);
        let t0 = Utc::now();
        for i in 0..3 {
            s.record(&[stats("a", i)], t0 + chrono::Duration::seconds(i as i64));
        }
        let h = s.history("a", t0);
        assert_eq!(h.iter().map(|p| p.pending).collect::<Vec<_>>(), vec![1, 2]);
        assert!(s.history("b", t0).is_empty());
        assert_eq!(s.history("a", t0 + chrono::Duration::seconds(2)).len(), 1);
    }

    #[test]
    fn metrics_have_one_series_per_dlq_with_escaped_labels() {
        let now = Utc::now();
        let mut a = stats("dlq.rss.events", 7);
        a.oldest_pending_at = Some(now - chrono::Duration::seconds(90));
        let text = render_metrics(&[a, stats("we\"ird", 0)], now);
        assert!(text.contains("dlq_pending_records{dlq=\"dlq.rss.events\"} 7\n"));
        assert!(text.contains("dlq_oldest_pending_age_seconds{dlq=\"dlq.rss.events\"} 90\n"));
        assert!(text.contains("dlq_pending_records{dlq=\"we\\\"ird\"} 0\n"));
        assert!(text.contains("# TYPE dlq_pending_records gauge"));
    }
}
