//! The monitor's TOML config: sampling, retention per DLQ, alert rules and
//! notification sinks (see `docs/monitoring.md` for a full example).
//!
//! The file is read into a TOML table and walked by hand rather than
//! deserialized straight into structs: serde stops at the first problem,
//! and a user fixing a config wants every problem at once, each with its key
//! path (`rule[1].repeat: invalid duration "15x": …`). Unknown keys are
//! problems too (with a "did you mean" when one is close), so that a typo
//! never silently turns a rule off.

use crate::duration::{format_duration, parse_duration};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The sink every config has: the monitor's log (tracing).
pub const LOG_SINK: &str = "log";

pub use dlq_core::secret::Secret;

/// The whole monitor config. [`MonitorConfig::default`] is what runs
/// without a file: samples every 15 s, no alert rules.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// `monitor.interval`: time between samples (default 15 s).
    pub interval: Duration,
    /// `monitor.history`: the SQLite file keeping samples and alert state.
    /// `None` lets the caller choose (the CLI uses the store's own file for
    /// `sqlite://PATH` stores, else `dlq-monitor.db`).
    pub history: Option<PathBuf>,
    /// `monitor.history_retention`: samples older than this are deleted
    /// (default 30 days; `"0"` keeps them forever).
    pub history_retention: Option<Duration>,
    /// `monitor.expiry_window`: expiry risk counts the pending records that
    /// retention deletes within this window (default 1 h).
    pub expiry_window: Duration,
    /// `monitor.expiry_scan_limit`: at most this many pending records are
    /// read per DLQ and tick to count the expiry risk (default 100,000);
    /// past it the count is a lower bound.
    pub expiry_scan_limit: u64,
    /// `monitor.retention`: retention of DLQs that have none of their own
    /// below and whose store does not say (none by default: no expiry risk).
    pub retention: Option<Duration>,
    /// `monitor.metrics_listen`: serve Prometheus metrics at
    /// `http://ADDR/metrics` (off by default).
    pub metrics_listen: Option<SocketAddr>,
    /// `[dlq."NAME"]`: settings of one DLQ.
    pub dlqs: BTreeMap<String, DlqConfig>,
    /// `[[rule]]`: alert rules, in file order.
    pub rules: Vec<Rule>,
    /// `[sink.NAME]`: where notifications go; `log` always exists.
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// Default of [`MonitorConfig::interval`].
pub const fn default_interval() -> Duration {
    Duration::from_secs(15)
}

/// Default of [`MonitorConfig::history_retention`].
pub const fn default_history_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// Default of [`MonitorConfig::expiry_window`].
pub const fn default_expiry_window() -> Duration {
    Duration::from_secs(3600)
}

/// Default of [`MonitorConfig::expiry_scan_limit`].
pub const fn default_expiry_scan_limit() -> u64 {
    100_000
}

/// Default of [`SinkConfig::timeout`].
pub const fn default_sink_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: default_interval(),
            history: None,
            history_retention: Some(default_history_retention()),
            expiry_window: default_expiry_window(),
            expiry_scan_limit: default_expiry_scan_limit(),
            retention: None,
            metrics_listen: None,
            dlqs: BTreeMap::new(),
            rules: Vec::new(),
            sinks: BTreeMap::from([(LOG_SINK.to_owned(), SinkConfig::log())]),
        }
    }
}

/// Settings of one DLQ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqConfig {
    /// `retention`: how long its records are kept (for expiry risk) when the
    /// store does not say itself (a Kafka topic's `retention.ms` does).
    pub retention: Option<Duration>,
}

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Pending records (the seed's "DLQ size > 1000").
    Size,
    /// Records dead-lettered per minute (the inflow rate), over the last
    /// sample interval.
    Growth,
    /// Age of the oldest pending record, in seconds.
    OldestAge,
    /// Pending records that retention deletes within the expiry window.
    ExpiryRisk,
}

impl RuleKind {
    /// Every kind, in a stable order.
    pub const ALL: [RuleKind; 4] = [
        RuleKind::Size,
        RuleKind::Growth,
        RuleKind::OldestAge,
        RuleKind::ExpiryRisk,
    ];

    /// The name used in the config (`size`, `growth`, `oldest_age`, `expiry_risk`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Size => "size",
            RuleKind::Growth => "growth",
            RuleKind::OldestAge => "oldest_age",
            RuleKind::ExpiryRisk => "expiry_risk",
        }
    }

    /// What the value counts, for messages (`pending records`, …).
    pub fn unit(self) -> &'static str {
        match self {
            RuleKind::Size => "pending records",
            RuleKind::Growth => "records dead-lettered per minute",
            RuleKind::OldestAge => "seconds since the oldest pending record failed",
            RuleKind::ExpiryRisk => "pending records expiring soon",
        }
    }
}

/// One alert rule: fires for a DLQ while its value is above the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `name`: unique; it keys the alert state and labels the metric.
    pub name: String,
    /// `kind`: what is measured.
    pub kind: RuleKind,
    /// `dlq`: only this DLQ; every DLQ when absent.
    pub dlq: Option<String>,
    /// `above`: the threshold; the rule fires when the value is strictly
    /// greater. Seconds for `oldest_age` (a duration such as `"2h"` is
    /// accepted there).
    pub above: f64,
    /// `repeat`: notify again at this interval while firing (never when absent).
    pub repeat: Option<Duration>,
    /// `sinks`: where notifications go (default `["log"]`).
    pub sinks: Vec<String>,
}

impl Rule {
    /// Whether the rule watches this DLQ.
    pub fn applies_to(&self, dlq: &str) -> bool {
        self.dlq.as_deref().is_none_or(|d| d == dlq)
    }
}

/// Kinds of notification sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// The monitor's own log (tracing): a warning when firing.
    Log,
    /// An HTTP POST of a JSON object (rule, dlq, state, value, threshold, at).
    Webhook,
    /// An HTTP POST of `{"text": …}`, as Slack incoming webhooks (and
    /// Mattermost, Rocket.Chat, …) take it.
    Slack,
}

impl SinkKind {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Log => "log",
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
        }
    }
}

/// One notification sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// `kind`: `webhook` or `slack` (`log` is built in).
    pub kind: SinkKind,
    /// `url`, or the environment variable named by `url_env`: where to POST.
    /// A secret: never logged.
    pub url: Option<Secret>,
    /// `timeout`: the longest a delivery may take, connection included
    /// (default 5 s).
    pub timeout: Duration,
}

impl SinkConfig {
    /// The log sink.
    pub fn log() -> SinkConfig {
        SinkConfig {
            kind: SinkKind::Log,
            url: None,
            timeout: default_sink_timeout(),
        }
    }
}

/// One thing wrong in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key path, e.g. `rule[1].repeat` or `sink.ops.url_env`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All the problems, in file order.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid monitor config: {one}"),
            many => {
                write!(f, "invalid monitor config ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl MonitorConfig {
    /// Parses a TOML config; `url_env` names are read from the process
    /// environment.
    pub fn from_toml(text: &str) -> Result<MonitorConfig, ConfigError> {
        MonitorConfig::from_toml_with_env(text, |name| std::env::var(name).ok())
    }

    /// Parses a TOML config, reading environment variables through `env`
    /// (for tests).
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<MonitorConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![Problem {
                path: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }],
        })?;
        let mut w = Walker::default();
        let config = w.config(&table, &env);
        if w.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: w.problems,
            })
        }
    }

    /// The retention of a DLQ from the config: its own, else the default.
    pub fn retention_for(&self, dlq: &str) -> Option<Duration> {
        self.dlqs
            .get(dlq)
            .and_then(|d| d.retention)
            .or(self.retention)
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Collects problems while reading a TOML table.
#[derive(Default)]
struct Walker {
    problems: Vec<Problem>,
}

/// `serve` is `dlq serve`'s section of the same file (dlq-server reads and
/// checks it), so one `dlq.toml` configures both.
// `triage` belongs to `dlq analyze` (dlq_core::triage checks it).
const TOP_KEYS: &[&str] = &["monitor", "dlq", "rule", "sink", "serve", "triage"];
const MONITOR_KEYS: &[&str] = &[
    "interval",
    "history",
    "history_retention",
    "expiry_window",
    "expiry_scan_limit",
    "retention",
    "metrics_listen",
];
const DLQ_KEYS: &[&str] = &["retention"];
const RULE_KEYS: &[&str] = &["name", "kind", "dlq", "above", "repeat", "sinks"];
const SINK_KEYS: &[&str] = &["kind", "url", "url_env", "timeout"];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// The edit distance of two short strings, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

impl Walker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn unknown_keys(&mut self, path: &str, t: &toml::Table, known: &[&str]) {
        for key in t.keys() {
            if !known.contains(&key.as_str()) {
                self.unknown_key(path, key, known);
            }
        }
    }

    fn unknown_key(&mut self, path: &str, key: &str, known: &[&str]) {
        let close = known
            .iter()
            .filter(|k| distance(k, key) <= 2)
            .min_by_key(|k| distance(k, key));
        let hint = match close {
            Some(k) => format!("; did you mean `{k}`?"),
            None => format!("; known keys here: {}", known.join(", ")),
        };
        self.problem(join(path, key), format!("unknown key `{key}`{hint}"));
    }

    fn table<'t>(&mut self, path: &str, v: &'t toml::Value) -> Option<&'t toml::Table> {
        match v {
            toml::Value::Table(t) => Some(t),
            other => {
                self.problem(
                    path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn string(&mut self, path: &str, t: &toml::Table, key: &str) -> Option<String> {
        match t.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    join(path, key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, t: &toml::Table, key: &str) -> Option<Duration> {
        match t.get(key)? {
            toml::Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(join(path, key), e);
                    None
                }
            },
            other => {
                self.problem(
                    join(path, key),
                    format!(
                        "expected a duration string such as \"15s\", \"5m\" or \"7d\", found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// A duration that must not be zero.
    fn positive_duration(&mut self, path: &str, t: &toml::Table, key: &str) -> Option<Duration> {
        let d = self.duration(path, t, key)?;
        if d.is_zero() {
            self.problem(join(path, key), "must be longer than 0");
            return None;
        }
        Some(d)
    }

    fn config(
        &mut self,
        top: &toml::Table,
        env: &impl Fn(&str) -> Option<String>,
    ) -> MonitorConfig {
        let mut c = MonitorConfig::default();
        self.unknown_keys("", top, TOP_KEYS);
        if let Some(v) = top.get("monitor")
            && let Some(t) = self.table("monitor", v)
        {
            self.monitor(t, &mut c);
        }
        if let Some(v) = top.get("dlq")
            && let Some(t) = self.table("dlq", v)
        {
            for (name, v) in t {
                let path = format!("dlq.{}", quoted_key(name));
                if let Some(d) = self.table(&path, v) {
                    let dlq = self.dlq(&path, name, d);
                    c.dlqs.insert(name.clone(), dlq);
                }
            }
        }
        // Names of every [sink.NAME], valid or not: a rule naming a sink
        // that has its own problems is not a second problem.
        let mut sink_names: BTreeSet<String> = BTreeSet::from([LOG_SINK.to_owned()]);
        if let Some(v) = top.get("sink")
            && let Some(t) = self.table("sink", v)
        {
            sink_names.extend(t.keys().cloned());
            for (name, v) in t {
                let path = format!("sink.{}", quoted_key(name));
                if name == LOG_SINK {
                    self.problem(
                        path,
                        "`log` is the built-in log sink and cannot be redefined; \
                         pick another name",
                    );
                    continue;
                }
                if let Some(s) = self.table(&path, v)
                    && let Some(sink) = self.sink(&path, s, env)
                {
                    c.sinks.insert(name.clone(), sink);
                }
            }
        }
        match top.get("rule") {
            None => {}
            Some(toml::Value::Array(rules)) => {
                let mut names = BTreeSet::new();
                for (i, v) in rules.iter().enumerate() {
                    let path = format!("rule[{i}]");
                    if let Some(t) = self.table(&path, v)
                        && let Some(rule) = self.rule(&path, t, &sink_names)
                    {
                        if !names.insert(rule.name.clone()) {
                            self.problem(
                                join(&path, "name"),
                                format!(
                                    "rule name {:?} is used twice; each rule needs its own name",
                                    rule.name
                                ),
                            );
                        }
                        c.rules.push(rule);
                    }
                }
            }
            Some(other) => self.problem(
                "rule",
                format!(
                    "expected [[rule]] tables (an array of tables), found {}",
                    type_name(other)
                ),
            ),
        }
        c
    }

    fn monitor(&mut self, t: &toml::Table, c: &mut MonitorConfig) {
        let path = "monitor";
        self.unknown_keys(path, t, MONITOR_KEYS);
        if let Some(d) = self.positive_duration(path, t, "interval") {
            c.interval = d;
        }
        if let Some(h) = self.string(path, t, "history") {
            if h.trim().is_empty() {
                self.problem(join(path, "history"), "is empty; give a file path");
            } else {
                c.history = Some(PathBuf::from(h));
            }
        }
        if let Some(d) = self.duration(path, t, "history_retention") {
            c.history_retention = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.positive_duration(path, t, "expiry_window") {
            c.expiry_window = d;
        }
        if let Some(v) = t.get("expiry_scan_limit") {
            match v.as_integer() {
                Some(n) if n > 0 => c.expiry_scan_limit = n as u64,
                Some(n) => self.problem(
                    join(path, "expiry_scan_limit"),
                    format!("must be a positive number of records, not {n}"),
                ),
                None => self.problem(
                    join(path, "expiry_scan_limit"),
                    format!("expected an integer, found {}", type_name(v)),
                ),
            }
        }
        if let Some(d) = self.positive_duration(path, t, "retention") {
            c.retention = Some(d);
        }
        if let Some(a) = self.string(path, t, "metrics_listen") {
            match a.parse::<SocketAddr>() {
                Ok(addr) => c.metrics_listen = Some(addr),
                Err(_) => self.problem(
                    join(path, "metrics_listen"),
                    format!("{a:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:9464\""),
                ),
            }
        }
    }

    fn dlq(&mut self, path: &str, name: &str, t: &toml::Table) -> DlqConfig {
        for (key, v) in t {
            if DLQ_KEYS.contains(&key.as_str()) {
                continue;
            }
            if v.is_table() {
                // `[dlq.dlq.rss.events]` is nested tables, not a DLQ named
                // `dlq.rss.events`: the most likely slip with dotted names.
                self.problem(
                    join(path, key),
                    format!(
                        "unknown key `{key}`; a DLQ name with dots must be quoted: \
                         [dlq.\"{name}.{key}…\"]"
                    ),
                );
            } else {
                self.unknown_key(path, key, DLQ_KEYS);
            }
        }
        DlqConfig {
            retention: self.positive_duration(path, t, "retention"),
        }
    }

    fn sink(
        &mut self,
        path: &str,
        t: &toml::Table,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Option<SinkConfig> {
        self.unknown_keys(path, t, SINK_KEYS);
        let kind = match self.string(path, t, "kind").as_deref() {
            Some("webhook") => Some(SinkKind::Webhook),
            Some("slack") => Some(SinkKind::Slack),
            Some(other) => {
                self.problem(
                    join(path, "kind"),
                    format!("unknown sink kind {other:?}; use \"webhook\" or \"slack\""),
                );
                None
            }
            None if t.contains_key("kind") => None,
            None => {
                self.problem(
                    join(path, "kind"),
                    "missing; set kind = \"webhook\" or kind = \"slack\"",
                );
                None
            }
        };
        let timeout = self
            .positive_duration(path, t, "timeout")
            .unwrap_or(default_sink_timeout());
        // Never echo the URL: it may hold a token.
        let url = match (t.contains_key("url"), t.get("url_env")) {
            (true, Some(_)) => {
                self.problem(
                    path,
                    "both `url` and `url_env` are set; keep one (url_env keeps the secret \
                     out of the file)",
                );
                None
            }
            (true, None) => self.string(path, t, "url").map(Secret::new),
            (false, Some(_)) => match self.string(path, t, "url_env") {
                Some(name) => match env(&name) {
                    Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                    _ => {
                        self.problem(
                            join(path, "url_env"),
                            format!(
                                "environment variable {name} is not set (or empty); export it \
                                 with the webhook URL"
                            ),
                        );
                        None
                    }
                },
                None => None,
            },
            (false, None) => {
                self.problem(
                    path,
                    "no URL; set url_env = \"NAME\" (an environment variable holding the \
                     webhook URL) or url = \"https://…\"",
                );
                None
            }
        };
        if let Some(u) = &url {
            let v = u.expose();
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                let what = if t.contains_key("url_env") {
                    "the URL in url_env"
                } else {
                    "url"
                };
                self.problem(
                    join(
                        path,
                        if t.contains_key("url_env") {
                            "url_env"
                        } else {
                            "url"
                        },
                    ),
                    format!("{what} must start with http:// or https:// (its value is not shown)"),
                );
            }
        }
        Some(SinkConfig {
            kind: kind?,
            url: Some(url?),
            timeout,
        })
    }

    fn rule(&mut self, path: &str, t: &toml::Table, sinks: &BTreeSet<String>) -> Option<Rule> {
        self.unknown_keys(path, t, RULE_KEYS);
        let name = match self.string(path, t, "name") {
            Some(n) if !n.trim().is_empty() => Some(n),
            Some(_) => {
                self.problem(join(path, "name"), "is empty; give the rule a name");
                None
            }
            None if t.contains_key("name") => None,
            None => {
                self.problem(
                    join(path, "name"),
                    "missing; every rule needs a unique name (it keys the alert state)",
                );
                None
            }
        };
        let kinds = RuleKind::ALL.map(RuleKind::as_str).join(", ");
        let kind = match self.string(path, t, "kind") {
            Some(k) => {
                let kind = RuleKind::ALL.into_iter().find(|x| x.as_str() == k);
                if kind.is_none() {
                    self.problem(
                        join(path, "kind"),
                        format!("unknown rule kind {k:?}; use one of {kinds}"),
                    );
                }
                kind
            }
            None if t.contains_key("kind") => None,
            None => {
                self.problem(join(path, "kind"), format!("missing; use one of {kinds}"));
                None
            }
        };
        let dlq = self.string(path, t, "dlq");
        if dlq.as_deref().is_some_and(|d| d.trim().is_empty()) {
            self.problem(
                join(path, "dlq"),
                "is empty; name a DLQ, or leave `dlq` out to watch every DLQ",
            );
        }
        let above = self.threshold(path, t, kind);
        let repeat = self.positive_duration(path, t, "repeat");
        let rule_sinks = match t.get("sinks") {
            None => Some(vec![LOG_SINK.to_owned()]),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{}[{i}]", join(path, "sinks"));
                    match item.as_str() {
                        Some(s) if sinks.contains(s) => out.push(s.to_owned()),
                        Some(s) => {
                            ok = false;
                            let known: Vec<&str> = sinks.iter().map(String::as_str).collect();
                            self.problem(
                                p,
                                format!(
                                    "unknown sink {s:?}; define it as [sink.{s}] or use one of: {}",
                                    known.join(", ")
                                ),
                            );
                        }
                        None => {
                            ok = false;
                            self.problem(
                                p,
                                format!("expected a sink name, found {}", type_name(item)),
                            );
                        }
                    }
                }
                if items.is_empty() {
                    ok = false;
                    self.problem(
                        join(path, "sinks"),
                        "is empty; list at least one sink (e.g. [\"log\"]), or leave it out",
                    );
                }
                ok.then_some(out)
            }
            Some(other) => {
                self.problem(
                    join(path, "sinks"),
                    format!(
                        "expected a list of sink names such as [\"log\"], found {}",
                        type_name(other)
                    ),
                );
                None
            }
        };
        Some(Rule {
            name: name?,
            kind: kind?,
            dlq: dlq.filter(|d| !d.trim().is_empty()),
            above: above?,
            repeat,
            sinks: rule_sinks?,
        })
    }

    /// `above`: a number ≥ 0; for `oldest_age`, seconds or a duration.
    fn threshold(&mut self, path: &str, t: &toml::Table, kind: Option<RuleKind>) -> Option<f64> {
        let p = join(path, "above");
        let Some(v) = t.get("above") else {
            self.problem(
                p,
                "missing; set the threshold, e.g. above = 1000 (the rule fires when the \
                 value is greater)",
            );
            return None;
        };
        let n = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) if f.is_finite() => *f,
            toml::Value::String(s) if kind == Some(RuleKind::OldestAge) => {
                match parse_duration(s) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => {
                        self.problem(p, e);
                        return None;
                    }
                }
            }
            toml::Value::String(s) => {
                self.problem(
                    p,
                    format!(
                        "expected a number, found the string {s:?} (only oldest_age takes a \
                         duration)"
                    ),
                );
                return None;
            }
            other => {
                self.problem(p, format!("expected a number, found {}", type_name(other)));
                return None;
            }
        };
        if n < 0.0 {
            self.problem(
                p,
                format!("is negative ({n}); thresholds are 0 or more (the rule fires above it)"),
            );
            return None;
        }
        Some(n)
    }
}

/// A table key as it must be written in TOML (quoted when it has dots).
fn quoted_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Formats a threshold for messages: seconds as a duration for `oldest_age`.
pub fn format_threshold(kind: RuleKind, value: f64) -> String {
    match kind {
        RuleKind::OldestAge if value >= 0.0 && value.fract() == 0.0 => {
            format_duration(Duration::from_secs_f64(value))
        }
        _ => crate::format_number(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPS_HOOK" => Some("https://hooks.example.invalid/T000/SECRET-TOKEN".into()),
            "NOT_A_URL" => Some("hooks.example.invalid/SECRET".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<MonitorConfig, ConfigError> {
        MonitorConfig::from_toml_with_env(text, env)
    }

    #[test]
    fn the_example_in_the_docs_parses() {
        let doc = include_str!("../../../docs/monitoring.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let c = MonitorConfig::from_toml_with_env(&doc[start..end], |name| {
            Some(format!("https://hooks.example.invalid/{name}"))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rules.len(), 4);
        assert_eq!(c.rules[0].name, "dlq-size");
        assert_eq!(c.rules[0].above, 1000.0);
        assert_eq!(c.rules[2].above, 86_400.0);
        assert_eq!(
            c.retention_for("dlq.polymarket.price_hourly"),
            Some(Duration::from_secs(3 * 86_400))
        );
        assert_eq!(c.sinks.len(), 3, "log, ops, team-chat");
    }

    #[test]
    fn an_empty_config_is_the_default() {
        assert_eq!(parse("").unwrap(), MonitorConfig::default());
        let c = MonitorConfig::default();
        assert_eq!(c.interval, Duration::from_secs(15));
        assert!(c.rules.is_empty());
        assert!(c.sinks.contains_key("log"));
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
            [monitor]
            interval = "30s"
            history = "/var/lib/dlq/monitor.db"
            history_retention = "14d"
            expiry_window = "2h"
            expiry_scan_limit = 5000
            retention = "7d"
            metrics_listen = "127.0.0.1:9464"

            [dlq."dlq.rss.events"]
            retention = "3d"

            [sink.ops]
            kind = "webhook"
            url_env = "OPS_HOOK"
            timeout = "2s"

            [sink.chat]
            kind = "slack"
            url = "https://chat.example.invalid/hook"

            [[rule]]
            name = "backlog"
            kind = "size"
            above = 1000
            repeat = "1h"
            sinks = ["log", "ops", "chat"]

            [[rule]]
            name = "stale"
            kind = "oldest_age"
            dlq = "dlq.polymarket.price_hourly"
            above = "6h"
            "#,
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.history, Some(PathBuf::from("/var/lib/dlq/monitor.db")));
        assert_eq!(c.history_retention, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(c.expiry_window, Duration::from_secs(7200));
        assert_eq!(c.expiry_scan_limit, 5000);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            c.retention_for("dlq.rss.events"),
            Some(Duration::from_secs(3 * 86_400))
        );
        assert_eq!(
            c.retention_for("other"),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].kind, RuleKind::Size);
        assert_eq!(c.rules[0].above, 1000.0);
        assert_eq!(c.rules[0].repeat, Some(Duration::from_secs(3600)));
        assert_eq!(c.rules[0].sinks, ["log", "ops", "chat"]);
        assert!(c.rules[0].applies_to("anything"));
        assert_eq!(c.rules[1].above, 6.0 * 3600.0);
        assert_eq!(c.rules[1].sinks, ["log"], "default sink");
        assert!(!c.rules[1].applies_to("dlq.rss.events"));
        let ops = &c.sinks["ops"];
        assert_eq!(ops.kind, SinkKind::Webhook);
        assert_eq!(
            ops.url.as_ref().unwrap().expose(),
            "https://hooks.example.invalid/T000/SECRET-TOKEN"
        );
        assert_eq!(ops.timeout, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("SECRET"), "Debug hides URLs");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key_path() {
        let err = parse(
            r#"
            colour = "blue"
            [monitor]
            interval = "15x"
            intervall = "5s"
            metrics_listen = "localhost"

            [dlq.dlq.rss.events]
            retention = "3d"

            [sink.ops]
            kind = "pager"
            url_env = "MISSING_VAR"

            [sink.log]
            kind = "webhook"

            [[rule]]
            name = "backlog"
            kind = "size"
            above = -5
            repeat = "1hour"
            sinks = ["log", "teams"]

            [[rule]]
            name = "backlog"
            kind = "sizes"
            above = "lots"

            [[rule]]
            kind = "growth"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        let want = [
            "colour: unknown key `colour`",
            "monitor.interval: invalid duration \"15x\": unknown unit \"x\"",
            "monitor.intervall: unknown key `intervall`; did you mean `interval`?",
            "monitor.metrics_listen: \"localhost\" is not an address",
            "dlq.dlq.rss: unknown key `rss`; a DLQ name with dots must be quoted",
            "sink.ops.kind: unknown sink kind \"pager\"",
            "sink.ops.url_env: environment variable MISSING_VAR is not set",
            "sink.log: `log` is the built-in log sink",
            "rule[0].above: is negative (-5)",
            "rule[0].repeat: invalid duration \"1hour\": unknown unit \"hour\"",
            "rule[0].sinks[1]: unknown sink \"teams\"",
            "rule[1].kind: unknown rule kind \"sizes\"",
            "rule[1].above: expected a number, found the string \"lots\"",
            "rule[2].name: missing",
            "rule[2].above: missing",
        ];
        for w in want {
            assert!(text.contains(w), "missing {w:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), want.len(), "{text}");
        assert!(text.starts_with("invalid monitor config (15 problems):"));
    }

    #[test]
    fn duplicate_rule_names_are_a_problem() {
        let err = parse(
            r#"
            [[rule]]
            name = "a"
            kind = "size"
            above = 1
            [[rule]]
            name = "a"
            kind = "growth"
            above = 2
            "#,
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].path, "rule[1].name");
    }

    #[test]
    fn webhook_urls_never_appear_in_errors() {
        let err = parse(
            r#"
            [sink.a]
            kind = "webhook"
            url_env = "NOT_A_URL"
            [sink.b]
            kind = "slack"
            url = "ftp://SECRET@example.invalid"
            [sink.c]
            kind = "slack"
            url = "https://x.invalid/SECRET"
            url_env = "OPS_HOOK"
            [sink.d]
            kind = "slack"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("sink.a.url_env: the URL in url_env must start with http"));
        assert!(text.contains("sink.b.url: url must start with http"));
        assert!(text.contains("sink.c: both `url` and `url_env` are set"));
        assert!(text.contains("sink.d: no URL"));
    }

    #[test]
    fn bad_toml_is_one_problem_with_the_position() {
        let err = parse("[monitor\ninterval = 1").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn thresholds_and_types_are_checked() {
        let err = parse(
            r#"
            [monitor]
            interval = 15
            expiry_scan_limit = 0
            [[rule]]
            name = "x"
            kind = "oldest_age"
            above = "2 days"
            sinks = "log"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("monitor.interval: expected a duration string"),
            "{text}"
        );
        assert!(
            text.contains("monitor.expiry_scan_limit: must be a positive"),
            "{text}"
        );
        assert!(
            text.contains("rule[0].above: invalid duration \"2 days\""),
            "{text}"
        );
        assert!(
            text.contains("rule[0].sinks: expected a list of sink names"),
            "{text}"
        );
    }
}
