//! [`Monitor`]: one tick samples every DLQ of a store, keeps the samples,
//! evaluates the alert rules and sends the notifications.
//!
//! # Delivery semantics of notifications
//!
//! **At-least-once, in order per sink.** A tick writes its samples, the
//! alert states it changed and the notifications those changes cause to the
//! history in **one transaction**, and only then tries to deliver the
//! queued notifications (the outbox). A delivered notification is removed;
//! one that fails stays queued, with its sink's later ones, and is tried
//! again on the next tick (the failure is logged, secrets scrubbed). So a
//! restart neither repeats a notification already sent nor loses one still
//! queued; a crash between a delivery and its removal sends it again.

use crate::alert::{AlertKey, AlertState, Transition};
use crate::config::{MonitorConfig, RuleKind};
use crate::history::{History, Sample};
use crate::sink::{Notification, Sinks};
use crate::{Result, metrics};
use chrono::{DateTime, Utc};
use dlq_core::store::{DlqStats, DlqStore, Selection};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Records read per page when counting the expiry risk.
const EXPIRY_PAGE: usize = 1000;

/// Tells the retention a store itself enforces on its DLQs (a Kafka
/// topic's `retention.ms`), which wins over the config's.
pub trait RetentionSource {
    /// An entry for each DLQ whose retention the store knows: `Some(d)`
    /// deletes records `d` after they were stored, `None` keeps them
    /// forever. DLQs without an entry fall back to the config.
    fn retention(&mut self, dlqs: &[String]) -> BTreeMap<String, Option<Duration>>;
}

/// One store-specific gauge of a DLQ (an SQS queue's visible messages).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoreGauge {
    /// The metric name, `dlq_<store>_<name>_<unit>` (e.g.
    /// `dlq_sqs_visible_messages`); published with the label `dlq`.
    pub name: &'static str,
    /// Its help text.
    #[serde(skip)]
    pub help: &'static str,
    /// Its value at this tick.
    pub value: f64,
}

/// Tells facts a store has about its DLQs beyond the generic counts (an
/// SQS queue's approximate visible, in-flight and delayed messages), which
/// the monitor publishes as gauges beside the generic ones and shows in
/// its report.
pub trait StoreGaugeSource {
    /// The gauges of each DLQ the store knows such facts of. A failure to
    /// read them is the source's to log: the tick goes on without them.
    fn gauges(&mut self, dlqs: &[String]) -> BTreeMap<String, Vec<StoreGauge>>;
}

/// An alert that fires now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    /// The rule's name.
    pub rule: String,
    /// What it measures.
    pub kind: RuleKind,
    /// The DLQ.
    pub dlq: String,
    /// The value at the last tick.
    #[serde(serialize_with = "crate::sink::plain_option")]
    pub value: Option<f64>,
    /// The threshold it is above.
    #[serde(serialize_with = "crate::sink::plain_number")]
    pub threshold: f64,
    /// Since when it fires.
    pub since: Option<DateTime<Utc>>,
}

/// One delivery attempt of a tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The sink.
    pub sink: String,
    /// The rule of the notification.
    pub rule: String,
    /// Its DLQ.
    pub dlq: String,
    /// Its state.
    pub state: Transition,
    /// Whether the sink took it.
    pub delivered: bool,
    /// Why not (free of secrets).
    pub error: Option<String>,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickReport {
    /// The tick's instant.
    pub at: DateTime<Utc>,
    /// One sample per DLQ of the store.
    pub samples: Vec<Sample>,
    /// Alert state changes of this tick (each queued once per sink).
    pub notifications: Vec<Notification>,
    /// Delivery attempts of this tick (this tick's and earlier queued ones).
    pub deliveries: Vec<Delivery>,
    /// Notifications still queued after this tick (sinks that failed).
    pub queued: u64,
    /// Alerts firing after this tick.
    pub firing: Vec<FiringAlert>,
    /// Store-specific gauges of this tick, by DLQ (see
    /// [`StoreGaugeSource`]); empty for stores that have none.
    pub store_gauges: BTreeMap<String, Vec<StoreGauge>>,
}

/// The monitor: config, history, alert state, sinks.
pub struct Monitor {
    config: MonitorConfig,
    history: History,
    sinks: Sinks,
    alerts: BTreeMap<AlertKey, AlertState>,
    previous: HashMap<String, Sample>,
    retention: Option<Box<dyn RetentionSource + Send>>,
    store_gauges: Option<Box<dyn StoreGaugeSource + Send>>,
    last_prune: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.config)
            .field("history", &self.history)
            .field("alerts", &self.alerts)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor with its config and history. Alert states are restored
    /// from the history; states of rules that are gone (or no longer watch
    /// that DLQ) are dropped without a notification.
    pub fn new(config: MonitorConfig, mut history: History) -> Result<Monitor> {
        let mut alerts = BTreeMap::new();
        let mut removed = Vec::new();
        for (key, state) in history.alerts()? {
            let kept = config
                .rule(&key.rule)
                .is_some_and(|r| r.applies_to(&key.dlq));
            if kept {
                alerts.insert(key, state);
            } else {
                tracing::info!(rule = %key.rule, dlq = %key.dlq, "dropping the state of a rule no longer configured");
                removed.push(key);
            }
        }
        if !removed.is_empty() {
            history.commit_tick(&[], &[], &removed, &[], Utc::now())?;
        }
        metrics::publish_tick(&[], &alerts);
        Ok(Monitor {
            sinks: Sinks::new(&config.sinks),
            config,
            history,
            alerts,
            previous: HashMap::new(),
            retention: None,
            store_gauges: None,
            last_prune: None,
        })
    }

    /// Where the store's own retention comes from (Kafka topics).
    pub fn set_retention_source(&mut self, source: impl RetentionSource + Send + 'static) {
        self.retention = Some(Box::new(source));
    }

    /// Where store-specific gauges come from (SQS queue attributes).
    pub fn set_store_gauge_source(&mut self, source: impl StoreGaugeSource + Send + 'static) {
        self.store_gauges = Some(Box::new(source));
    }

    /// The config.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The history (samples since a time, …).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.alerts
            .iter()
            .filter(|(_, s)| s.firing)
            .filter_map(|(k, s)| {
                let rule = self.config.rule(&k.rule)?;
                Some(FiringAlert {
                    rule: k.rule.clone(),
                    kind: rule.kind,
                    dlq: k.dlq.clone(),
                    value: s.value,
                    threshold: rule.above,
                    since: s.since,
                })
            })
            .collect()
    }

    /// Samples every DLQ of `store` at `now`, records the samples,
    /// evaluates the rules and delivers notifications. A store that cannot
    /// be read fails the tick (nothing is recorded); a sink that fails does
    /// not (its notifications wait for the next tick).
    pub fn tick<S: DlqStore + ?Sized>(
        &mut self,
        store: &S,
        now: DateTime<Utc>,
    ) -> Result<TickReport> {
        let stats = store.stats()?;
        let samples = self.sample(store, &stats, now)?;
        let store_gauges = match self.store_gauges.as_mut() {
            Some(source) => {
                let names: Vec<String> = stats.iter().map(|s| s.dlq.clone()).collect();
                source.gauges(&names)
            }
            None => BTreeMap::new(),
        };

        // Alert evaluation on copies: the in-memory state changes only once
        // the history has it.
        let mut states: Vec<(AlertKey, AlertState)> = Vec::new();
        let mut notifications = Vec::new();
        let mut outbox = Vec::new();
        for rule in &self.config.rules {
            let mut evaluate = |dlq: &str, value: Option<f64>| {
                let key = AlertKey {
                    rule: rule.name.clone(),
                    dlq: dlq.to_owned(),
                };
                let mut state = self.alerts.get(&key).cloned().unwrap_or_default();
                if let Some(t) = state.step(value, rule.above, rule.repeat, now) {
                    let n = Notification {
                        rule: rule.name.clone(),
                        kind: rule.kind,
                        dlq: dlq.to_owned(),
                        state: t,
                        value: value.unwrap_or(0.0),
                        threshold: rule.above,
                        at: now,
                        since: state.since,
                    };
                    let body = serde_json::to_string(&n).unwrap_or_default();
                    for sink in &rule.sinks {
                        outbox.push((sink.clone(), body.clone()));
                    }
                    notifications.push(n);
                }
                states.push((key, state));
            };
            for s in samples.iter().filter(|s| rule.applies_to(&s.dlq)) {
                evaluate(&s.dlq, value_of(rule.kind, s));
            }
            // A DLQ the store no longer lists: its alerts resolve.
            let gone: Vec<String> = self
                .alerts
                .iter()
                .filter(|(k, st)| {
                    k.rule == rule.name && st.firing && !samples.iter().any(|s| s.dlq == k.dlq)
                })
                .map(|(k, _)| k.dlq.clone())
                .collect();
            for dlq in gone {
                evaluate(&dlq, Some(0.0));
            }
        }

        self.history
            .commit_tick(&samples, &states, &[], &outbox, now)?;
        // The whole tick at once: a scrape sees it all or none of it.
        metrics::publish_tick(&samples, states.iter().map(|(k, s)| (k, s)));
        metrics::publish_store_gauges(&store_gauges);
        for s in &samples {
            self.previous.insert(s.dlq.clone(), s.clone());
        }
        for (k, s) in states {
            self.alerts.insert(k, s);
        }

        let deliveries = self.deliver()?;
        let queued = self.history.outbox_len()?;
        self.prune(now);
        Ok(TickReport {
            at: now,
            samples,
            notifications,
            deliveries,
            queued,
            firing: self.firing(),
            store_gauges,
        })
    }

    fn sample<S: DlqStore + ?Sized>(
        &mut self,
        store: &S,
        stats: &[DlqStats],
        now: DateTime<Utc>,
    ) -> Result<Vec<Sample>> {
        let names: Vec<String> = stats.iter().map(|s| s.dlq.clone()).collect();
        let store_retention = match self.retention.as_mut() {
            Some(r) => r.retention(&names),
            None => BTreeMap::new(),
        };
        let mut samples = Vec::with_capacity(stats.len());
        for s in stats {
            let retention = match store_retention.get(&s.dlq) {
                Some(r) => *r,
                None => self.config.retention_for(&s.dlq),
            };
            let previous = match self.previous.get(&s.dlq) {
                Some(p) => Some(p.clone()),
                None => self.history.latest(&s.dlq)?,
            };
            let inflow_per_minute = previous.and_then(|p| inflow(p.total, p.at, s.total, now));
            let expiry_risk = match retention {
                Some(r) => Some(expiry_risk(
                    store,
                    s,
                    r,
                    self.config.expiry_window,
                    self.config.expiry_scan_limit,
                    now,
                )?),
                None => None,
            };
            samples.push(Sample {
                dlq: s.dlq.clone(),
                at: now,
                pending: s.pending,
                parked: s.parked,
                replayed: s.replayed,
                discarded: s.discarded,
                archived: s.archived,
                total: s.total,
                inflow_per_minute,
                oldest_pending_at: s.oldest_pending_at,
                oldest_pending_age_seconds: s
                    .oldest_pending_age(now)
                    .map(|d| d.num_seconds().max(0)),
                expiry_risk,
                retention_ms: retention.map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
            });
        }
        Ok(samples)
    }

    /// Tries every queued notification in order; after a sink fails, its
    /// later notifications wait too (order per sink is kept).
    fn deliver(&mut self) -> Result<Vec<Delivery>> {
        let mut failed_sinks: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for q in self.history.queued()? {
            if failed_sinks.contains(&q.sink) {
                continue;
            }
            let Ok(n) = serde_json::from_str::<Notification>(&q.body) else {
                tracing::error!(sink = %q.sink, "dropping an unreadable queued notification");
                self.history.dequeue(q.seq)?;
                continue;
            };
            if !self.sinks.contains(&q.sink) {
                tracing::warn!(sink = %q.sink, rule = %n.rule, dlq = %n.dlq,
                    "dropping a notification for a sink that is no longer configured");
                self.history.dequeue(q.seq)?;
                continue;
            }
            let result = self.sinks.deliver(&q.sink, &n);
            metrics::record_notification(&q.sink, result.is_ok());
            match &result {
                Ok(()) => self.history.dequeue(q.seq)?,
                Err(e) => {
                    tracing::warn!(sink = %q.sink, rule = %n.rule, dlq = %n.dlq,
                        state = n.state.as_str(), attempts = q.attempts + 1, error = %e,
                        "alert notification not delivered; retrying on the next tick");
                    self.history.delivery_failed(q.seq, e)?;
                    failed_sinks.push(q.sink.clone());
                }
            }
            out.push(Delivery {
                sink: q.sink,
                rule: n.rule,
                dlq: n.dlq,
                state: n.state,
                delivered: result.is_ok(),
                error: result.err(),
            });
        }
        Ok(out)
    }

    /// Deletes old samples, at most once an hour.
    fn prune(&mut self, now: DateTime<Utc>) {
        let Some(keep) = self.config.history_retention else {
            return;
        };
        if self
            .last_prune
            .is_some_and(|t| now - t < chrono::Duration::hours(1))
        {
            return;
        }
        self.last_prune = Some(now);
        let Ok(keep) = chrono::Duration::from_std(keep) else {
            return;
        };
        match self.history.prune(now - keep) {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "pruned old samples"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning old samples failed"),
        }
    }
}

/// The value a rule compares with its threshold; `None` when unknown.
pub fn value_of(kind: RuleKind, s: &Sample) -> Option<f64> {
    match kind {
        RuleKind::Size => Some(s.pending as f64),
        RuleKind::Growth => s.inflow_per_minute,
        RuleKind::OldestAge => Some(s.oldest_pending_age_seconds.unwrap_or(0) as f64),
        RuleKind::ExpiryRisk => Some(s.expiry_risk.unwrap_or(0) as f64),
    }
}

/// Records dead-lettered per minute between two samples of `total`;
/// `None` when no time passed or the total went down (retention deleted
/// records, or the store was reset: the count is unknown then).
pub fn inflow(
    previous_total: u64,
    previous_at: DateTime<Utc>,
    total: u64,
    now: DateTime<Utc>,
) -> Option<f64> {
    let ms = (now - previous_at).num_milliseconds();
    if ms <= 0 || total < previous_total {
        return None;
    }
    Some((total - previous_total) as f64 * 60_000.0 / ms as f64)
}

/// Pending records of a DLQ stored at or before `now + window -
/// retention`: those retention deletes within the window (or already
/// should have). Reads no record when the oldest pending one is younger
/// than that; else reads pending records, at most `limit` (the count is
/// then a lower bound, and a warning says so).
pub fn expiry_risk<S: DlqStore + ?Sized>(
    store: &S,
    stats: &DlqStats,
    retention: Duration,
    window: Duration,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<u64> {
    let (Ok(retention), Ok(window)) = (
        chrono::Duration::from_std(retention),
        chrono::Duration::from_std(window),
    ) else {
        return Ok(0);
    };
    let Some(cutoff) = now
        .checked_add_signed(window)
        .and_then(|t| t.checked_sub_signed(retention))
    else {
        return Ok(0);
    };
    // A record is stored after it failed, so a DLQ whose oldest pending
    // failure is after the cutoff has nothing at risk.
    match stats.oldest_pending_at {
        None => return Ok(0),
        Some(oldest) if oldest > cutoff || stats.pending == 0 => return Ok(0),
        Some(_) => {}
    }
    let selection = Selection::pending(Some(&stats.dlq));
    let mut cursor = None;
    let (mut read, mut at_risk) = (0u64, 0u64);
    loop {
        let page = store.scan(&selection, cursor.as_ref(), EXPIRY_PAGE)?;
        for r in &page.records {
            read += 1;
            if r.stored_at <= cutoff {
                at_risk += 1;
            }
        }
        if read >= limit && page.next.is_some() {
            tracing::warn!(dlq = %stats.dlq, read, at_risk,
                "expiry risk: stopped after expiry_scan_limit records; the count is a lower bound");
            break;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(at_risk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rule;
    use dlq_core::memory::MemoryStore;
    use dlq_core::store::{Entry, Status};
    use dlq_core::{DeadLetter, Failure};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn entries(dlq: &str, from: usize, n: usize, failed_at: DateTime<Utc>) -> Vec<Entry> {
        (from..from + n)
            .map(|i| {
                let mut letter = DeadLetter::new(
                    format!("file:t:{i}"),
                    b"{}".to_vec(),
                    &Failure::permanent("validate", "validation.x", "bad"),
                );
                letter.failed_at = failed_at;
                letter.first_failed_at = failed_at;
                Entry {
                    dlq: dlq.into(),
                    letter,
                    status: Status::Pending,
                }
            })
            .collect()
    }

    #[test]
    fn inflow_is_records_per_minute_between_samples() {
        assert_eq!(inflow(100, at(0), 130, at(60)), Some(30.0));
        assert_eq!(inflow(100, at(0), 130, at(15)), Some(120.0));
        assert_eq!(inflow(100, at(0), 100, at(15)), Some(0.0));
        assert_eq!(inflow(100, at(0), 90, at(15)), None, "total went down");
        assert_eq!(inflow(100, at(15), 130, at(15)), None, "no time passed");
    }

    #[test]
    fn expiry_risk_counts_records_stored_before_the_cutoff() {
        let mut store = MemoryStore::new();
        // The memory store stamps stored_at with the wall clock: use "now"
        // relative to it.
        let t0 = Utc::now();
        store.append(&entries("d", 0, 5, t0)).unwrap();
        let stats = store.stats().unwrap().remove(0);
        let day = Duration::from_secs(86_400);
        let hour = Duration::from_secs(3600);
        // Retention 1 day, window 1 h: at t0 nothing expires soon...
        assert_eq!(expiry_risk(&store, &stats, day, hour, 100, t0).unwrap(), 0);
        // ...23 h 30 min later, all five do.
        let later = t0 + chrono::Duration::minutes(23 * 60 + 30);
        assert_eq!(
            expiry_risk(&store, &stats, day, hour, 100, later).unwrap(),
            5
        );
        // A scan limit below the count gives a lower bound (pages of 1000:
        // the first page is read whole).
        assert_eq!(expiry_risk(&store, &stats, day, hour, 1, later).unwrap(), 5);
        // Nothing pending, nothing at risk.
        let empty = DlqStats::empty("d");
        assert_eq!(
            expiry_risk(&store, &empty, day, hour, 100, later).unwrap(),
            0
        );
    }

    fn size_rule(name: &str, above: f64, repeat: Option<Duration>) -> Rule {
        Rule {
            name: name.into(),
            kind: RuleKind::Size,
            dlq: None,
            above,
            repeat,
            sinks: vec!["log".into()],
        }
    }

    #[test]
    fn ticks_sample_evaluate_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let mut config = MonitorConfig {
            rules: vec![
                size_rule("big", 3.0, Some(Duration::from_secs(600))),
                Rule {
                    name: "fast".into(),
                    kind: RuleKind::Growth,
                    dlq: Some("a".into()),
                    above: 5.0,
                    repeat: None,
                    sinks: vec!["log".into()],
                },
            ],
            ..MonitorConfig::default()
        };
        let mut store = MemoryStore::new();
        store.append(&entries("a", 0, 2, at(0))).unwrap();
        store.append(&entries("b", 0, 1, at(0))).unwrap();

        let mut m = Monitor::new(config.clone(), History::open(&path).unwrap()).unwrap();
        let r = m.tick(&store, at(60)).unwrap();
        assert_eq!(r.samples.len(), 2);
        assert_eq!(r.samples[0].inflow_per_minute, None, "first sample");
        assert!(r.notifications.is_empty());

        // 10 more records in 60 s: size 12 > 3 and inflow 10/min > 5.
        store.append(&entries("a", 2, 10, at(100))).unwrap();
        let r = m.tick(&store, at(120)).unwrap();
        let a = &r.samples[0];
        assert_eq!((a.dlq.as_str(), a.pending, a.total), ("a", 12, 12));
        assert_eq!(a.inflow_per_minute, Some(10.0));
        let got: Vec<(&str, &str, Transition)> = r
            .notifications
            .iter()
            .map(|n| (n.rule.as_str(), n.dlq.as_str(), n.state))
            .collect();
        assert_eq!(
            got,
            [
                ("big", "a", Transition::Firing),
                ("fast", "a", Transition::Firing)
            ]
        );
        assert_eq!(r.deliveries.len(), 2, "both to the log");
        assert!(r.deliveries.iter().all(|d| d.delivered));
        assert_eq!(r.queued, 0);
        assert_eq!(m.firing().len(), 2);
        drop(m);

        // A restart: nothing is notified again; inflow continues from the
        // history's last sample.
        let mut m = Monitor::new(config.clone(), History::open(&path).unwrap()).unwrap();
        assert_eq!(m.firing().len(), 2, "restored");
        let r = m.tick(&store, at(180)).unwrap();
        assert_eq!(r.samples[0].inflow_per_minute, Some(0.0));
        let got: Vec<(&str, Transition)> = r
            .notifications
            .iter()
            .map(|n| (n.rule.as_str(), n.state))
            .collect();
        assert_eq!(got, [("fast", Transition::Resolved)]);

        // The repeat interval (600 s) counts from the first notification.
        let r = m.tick(&store, at(719)).unwrap();
        assert!(r.notifications.is_empty());
        let r = m.tick(&store, at(720)).unwrap();
        assert_eq!(r.notifications.len(), 1);
        assert_eq!(r.notifications[0].state, Transition::Repeat);

        // Settling records resolves it once.
        let ids: Vec<String> = (0..12).map(|i| format!("file:t:{i}")).collect();
        store.settle("a", &ids, Status::Replayed).unwrap();
        let r = m.tick(&store, at(780)).unwrap();
        assert_eq!(r.notifications.len(), 1);
        assert_eq!(r.notifications[0].state, Transition::Resolved);
        assert_eq!(r.notifications[0].value, 0.0);
        assert!(m.firing().is_empty());
        assert!(m.tick(&store, at(840)).unwrap().notifications.is_empty());

        // History: one sample per DLQ and tick (60, 120, 180, 719, 720, 780, 840).
        let history = m.history().samples("a", at(0)).unwrap();
        assert_eq!(history.len(), 7);
        assert_eq!(m.history().samples("a", at(700)).unwrap().len(), 4);

        // A rule removed from the config takes its state with it.
        config.rules.remove(0);
        drop(m);
        let m = Monitor::new(config, History::open(&path).unwrap()).unwrap();
        assert!(
            m.history()
                .alerts()
                .unwrap()
                .iter()
                .all(|(k, _)| k.rule == "fast")
        );
    }

    struct Fixed(BTreeMap<String, Option<Duration>>);

    impl RetentionSource for Fixed {
        fn retention(&mut self, _dlqs: &[String]) -> BTreeMap<String, Option<Duration>> {
            self.0.clone()
        }
    }

    #[test]
    fn the_store_retention_wins_over_the_config() {
        let config = MonitorConfig {
            retention: Some(Duration::from_secs(1)),
            ..MonitorConfig::default()
        };
        let mut store = MemoryStore::new();
        store.append(&entries("a", 0, 2, Utc::now())).unwrap();
        store.append(&entries("b", 0, 3, Utc::now())).unwrap();
        store.append(&entries("c", 0, 1, Utc::now())).unwrap();
        let mut m = Monitor::new(config, History::open_in_memory().unwrap()).unwrap();
        m.set_retention_source(Fixed(BTreeMap::from([
            ("a".to_owned(), Some(Duration::from_secs(30 * 86_400))),
            ("b".to_owned(), None),
        ])));
        let r = m.tick(&store, Utc::now()).unwrap();
        let risk: Vec<(Option<u64>, Option<u64>)> = r
            .samples
            .iter()
            .map(|s| (s.expiry_risk, s.retention_ms))
            .collect();
        assert_eq!(
            risk,
            [
                (Some(0), Some(30 * 86_400_000)),
                (None, None),
                (Some(1), Some(1000)),
            ],
            "a: the store's 30 days; b: kept forever; c: the config's 1 s"
        );
    }
}
