//! Notification sinks: the log, a generic JSON webhook, a Slack-compatible
//! webhook. Deliveries are blocking HTTP POSTs (ureq) with a timeout; a
//! failure is returned as text already free of the URL (webhook URLs hold
//! tokens), and the caller retries on the next tick.

use crate::alert::Transition;
use crate::config::{RuleKind, Secret, SinkConfig, SinkKind, format_threshold};
use crate::format_number;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// One alert state change, as queued and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The rule's name.
    pub rule: String,
    /// What the rule measures.
    pub kind: RuleKind,
    /// The DLQ.
    pub dlq: String,
    /// `firing`, `repeat` or `resolved`.
    pub state: Transition,
    /// The value that caused it.
    #[serde(serialize_with = "plain_number")]
    pub value: f64,
    /// The rule's threshold (fires when the value is above).
    #[serde(serialize_with = "plain_number")]
    pub threshold: f64,
    /// When the monitor saw it.
    pub at: DateTime<Utc>,
    /// When the alert started firing (absent once resolved).
    pub since: Option<DateTime<Utc>>,
}

/// Whole numbers as JSON integers (`1234`, not `1234.0`).
pub(crate) fn plain_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// [`plain_number`] for an optional value.
pub(crate) fn plain_option<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => plain_number(v, s),
        None => s.serialize_none(),
    }
}

impl<'de> Deserialize<'de> for RuleKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RuleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown rule kind {s:?}")))
    }
}

impl<'de> Deserialize<'de> for Transition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "firing" => Ok(Transition::Firing),
            "repeat" => Ok(Transition::Repeat),
            "resolved" => Ok(Transition::Resolved),
            other => Err(serde::de::Error::custom(format!(
                "unknown alert state {other:?}"
            ))),
        }
    }
}

impl Notification {
    /// One line for people: `[FIRING] backlog on dlq.rss.events: 1234
    /// pending records (threshold 1000)`.
    pub fn summary(&self) -> String {
        let state = match self.state {
            Transition::Firing => "FIRING",
            Transition::Repeat => "STILL FIRING",
            Transition::Resolved => "RESOLVED",
        };
        let value = format_threshold(self.kind, self.value);
        let what = match self.kind {
            RuleKind::Size => format!("{value} pending records"),
            RuleKind::Growth => format!("{value} records dead-lettered per minute"),
            RuleKind::OldestAge => format!("oldest pending record {value} old"),
            RuleKind::ExpiryRisk => {
                format!("{value} pending records expire within the expiry window")
            }
        };
        format!(
            "[{state}] {} on {}: {what} (threshold {})",
            self.rule,
            self.dlq,
            format_threshold(self.kind, self.threshold),
        )
    }

    /// The body a generic webhook receives: the notification's fields plus
    /// `summary`.
    pub fn webhook_body(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("summary".into(), self.summary().into());
        }
        v
    }

    /// The body a Slack incoming webhook receives.
    pub fn slack_body(&self) -> serde_json::Value {
        serde_json::json!({ "text": self.summary() })
    }
}

/// The configured sinks, with one HTTP agent (connection pool) each.
pub(crate) struct Sinks {
    sinks: BTreeMap<String, (SinkConfig, Option<ureq::Agent>)>,
}

impl Sinks {
    pub fn new(configs: &BTreeMap<String, SinkConfig>) -> Sinks {
        let sinks = configs
            .iter()
            .map(|(name, c)| {
                let agent = (c.kind != SinkKind::Log).then(|| {
                    ureq::Agent::config_builder()
                        .timeout_global(Some(c.timeout))
                        .http_status_as_error(true)
                        // A redirect would re-send the alert elsewhere.
                        .max_redirects(0)
                        .user_agent("dlq-monitor")
                        .build()
                        .new_agent()
                });
                (name.clone(), (c.clone(), agent))
            })
            .collect();
        Sinks { sinks }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.sinks.contains_key(name)
    }

    /// Delivers one notification; the error text never holds the URL.
    pub fn deliver(&self, sink: &str, n: &Notification) -> Result<(), String> {
        let Some((config, agent)) = self.sinks.get(sink) else {
            return Err(format!("sink {sink:?} is not configured any more"));
        };
        match (config.kind, agent, &config.url) {
            (SinkKind::Log, _, _) => {
                log_notification(n);
                Ok(())
            }
            (SinkKind::Webhook, Some(agent), Some(url)) => post(agent, url, &n.webhook_body()),
            (SinkKind::Slack, Some(agent), Some(url)) => post(agent, url, &n.slack_body()),
            _ => Err(format!("sink {sink:?} has no URL")),
        }
    }
}

fn log_notification(n: &Notification) {
    let value = format_number(n.value);
    let threshold = format_number(n.threshold);
    match n.state {
        Transition::Firing | Transition::Repeat => tracing::warn!(
            rule = %n.rule,
            dlq = %n.dlq,
            state = n.state.as_str(),
            value = %value,
            threshold = %threshold,
            "{}",
            n.summary()
        ),
        Transition::Resolved => tracing::info!(
            rule = %n.rule,
            dlq = %n.dlq,
            state = n.state.as_str(),
            value = %value,
            threshold = %threshold,
            "{}",
            n.summary()
        ),
    }
}

fn post(agent: &ureq::Agent, url: &Secret, body: &serde_json::Value) -> Result<(), String> {
    let text = body.to_string();
    agent
        .post(url.expose())
        .header("content-type", "application/json")
        .send(text.as_str())
        .map(drop)
        .map_err(|e| describe(&e, url))
}

/// Words for a failed delivery, without the URL (some ureq errors quote it).
fn describe(e: &ureq::Error, url: &Secret) -> String {
    let text = match e {
        ureq::Error::StatusCode(code) => format!("the receiver answered HTTP {code}"),
        ureq::Error::BadUri(_) => "the URL is not valid (its value is not shown)".into(),
        ureq::Error::HostNotFound => "the host was not found".into(),
        ureq::Error::ConnectionFailed => "could not connect".into(),
        ureq::Error::Timeout(_) => format!("timed out ({e})"),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            "the receiver answered with a redirect (not followed)".into()
        }
        other => other.to_string(),
    };
    redact(&text, url)
}

/// Removes the URL and its secret-looking parts (path segments and query
/// values of 6 characters or more) from a text.
pub(crate) fn redact(text: &str, url: &Secret) -> String {
    let url = url.expose();
    let mut parts: Vec<&str> = vec![url];
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    parts.push(after_scheme);
    if let Some(i) = after_scheme.find(['/', '?']) {
        let tail = &after_scheme[i..];
        if tail.len() > 1 {
            parts.push(tail);
        }
        parts.extend(
            tail.split(['/', '?', '&', '='])
                .filter(|seg| seg.len() >= 6),
        );
    }
    // Userinfo (user:password@host).
    if let Some((userinfo, _)) = after_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .rsplit_once('@')
    {
        parts.push(userinfo);
        parts.extend(userinfo.split(':').filter(|p| p.len() >= 4));
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = text.to_owned();
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        if out.contains(p) {
            out = out.replace(p, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(state: Transition, kind: RuleKind, value: f64, threshold: f64) -> Notification {
        Notification {
            rule: "backlog".into(),
            kind,
            dlq: "dlq.rss.events".into(),
            state,
            value,
            threshold,
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            since: None,
        }
    }

    #[test]
    fn bodies_carry_rule_dlq_state_value_threshold_and_time() {
        let n = note(Transition::Firing, RuleKind::Size, 1234.0, 1000.0);
        let b = n.webhook_body();
        assert_eq!(b["rule"], "backlog");
        assert_eq!(b["dlq"], "dlq.rss.events");
        assert_eq!(b["state"], "firing");
        assert_eq!(b["kind"], "size");
        assert_eq!(b["value"], 1234, "whole numbers are integers");
        assert_eq!(b["threshold"], 1000);
        assert_eq!(b["at"], "2027-01-15T08:00:00Z");
        assert_eq!(
            b["summary"],
            "[FIRING] backlog on dlq.rss.events: 1234 pending records (threshold 1000)"
        );
        let s = note(Transition::Resolved, RuleKind::Growth, 2.5, 10.0).slack_body();
        assert_eq!(
            s,
            serde_json::json!({"text": "[RESOLVED] backlog on dlq.rss.events: 2.5 records dead-lettered per minute (threshold 10)"})
        );
        let age = note(Transition::Repeat, RuleKind::OldestAge, 7200.0, 3600.0).summary();
        assert_eq!(
            age,
            "[STILL FIRING] backlog on dlq.rss.events: oldest pending record 2h old (threshold 1h)"
        );
    }

    #[test]
    fn notifications_round_trip_through_the_outbox_format() {
        let n = note(Transition::Repeat, RuleKind::ExpiryRisk, 3.0, 0.0);
        let text = serde_json::to_string(&n).unwrap();
        let back: Notification = serde_json::from_str(&text).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn redaction_removes_the_url_and_its_tokens() {
        let url = Secret::new(
            "https://user:pa55word@hooks.example.invalid/services/T0001/XOXB-SECRET?token=abcdef123",
        );
        let text = format!(
            "bad uri: {} / path /services/T0001/XOXB-SECRET / XOXB-SECRET / abcdef123 / pa55word",
            url.expose()
        );
        let out = redact(&text, &url);
        for secret in [
            "XOXB-SECRET",
            "abcdef123",
            "pa55word",
            "hooks.example.invalid/services",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.starts_with("bad uri: ***"), "{out}");
    }

    #[test]
    fn a_sink_that_is_down_fails_with_words_and_no_url() {
        // A port nothing listens on: bind one, then free it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/hook/SUPER-SECRET-TOKEN");
        let sinks = Sinks::new(&BTreeMap::from([(
            "ops".to_owned(),
            SinkConfig {
                kind: SinkKind::Webhook,
                url: Some(Secret::new(url)),
                timeout: std::time::Duration::from_secs(2),
            },
        )]));
        let err = sinks
            .deliver("ops", &note(Transition::Firing, RuleKind::Size, 2.0, 1.0))
            .unwrap_err();
        assert!(!err.contains("SUPER-SECRET-TOKEN"), "{err}");
        assert!(!err.is_empty());
        assert!(
            sinks
                .deliver("nope", &note(Transition::Firing, RuleKind::Size, 2.0, 1.0))
                .is_err()
        );
    }
}
