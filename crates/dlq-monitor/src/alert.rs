//! The alert state machine of one (rule, DLQ): pure, so it is tested with
//! made-up instants.
//!
//! ```text
//!            value > threshold: notify "firing"
//!   ok ────────────────────────────────────────▶ firing ──┐ still above, `repeat`
//!    ▲                                             │  ▲    │ elapsed since the last
//!    └──────── value ≤ threshold: notify "resolved"┘  └────┘ notification: "repeat"
//! ```
//!
//! An unknown value (no inflow rate on the first sample) changes nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Which alert: a rule applied to one DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AlertKey {
    /// The rule's name.
    pub rule: String,
    /// The DLQ.
    pub dlq: String,
}

/// Where an alert stands; persisted in the history after every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertState {
    /// Whether the condition held at the last evaluation.
    pub firing: bool,
    /// When it started firing (while firing).
    pub since: Option<DateTime<Utc>>,
    /// When a notification was last queued for it.
    pub last_notified: Option<DateTime<Utc>>,
    /// The value at the last evaluation.
    pub value: Option<f64>,
}

/// A change worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The condition became true.
    Firing,
    /// Still true, and the rule's `repeat` interval has passed.
    Repeat,
    /// The condition became false.
    Resolved,
}

impl Transition {
    /// `firing`, `repeat` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Repeat => "repeat",
            Transition::Resolved => "resolved",
        }
    }
}

impl AlertState {
    /// Evaluates the alert at `now` with the current `value` (`None`:
    /// unknown) against `threshold` (fires when strictly above). Returns the
    /// notification to send, if any. `repeat` of `None` never repeats.
    pub fn step(
        &mut self,
        value: Option<f64>,
        threshold: f64,
        repeat: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let v = value?;
        self.value = Some(v);
        let above = v > threshold;
        match (self.firing, above) {
            (false, true) => {
                self.firing = true;
                self.since = Some(now);
                self.last_notified = Some(now);
                Some(Transition::Firing)
            }
            (true, false) => {
                self.firing = false;
                self.since = None;
                self.last_notified = Some(now);
                Some(Transition::Resolved)
            }
            (true, true) => {
                let every = chrono::Duration::from_std(repeat?).ok()?;
                let due = self.last_notified.is_none_or(|t| now - t >= every);
                if due {
                    self.last_notified = Some(now);
                    Some(Transition::Repeat)
                } else {
                    None
                }
            }
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn fires_once_while_above_and_resolves_once() {
        let mut s = AlertState::default();
        let mut seen = Vec::new();
        for (t, v) in [
            (0, 10.0),
            (15, 1001.0),
            (30, 1500.0),
            (45, 2000.0),
            (60, 999.0),
            (75, 5.0),
        ] {
            seen.push(s.step(Some(v), 1000.0, None, at(t)));
        }
        assert_eq!(
            seen,
            [
                None,
                Some(Transition::Firing),
                None,
                None,
                Some(Transition::Resolved),
                None
            ]
        );
        assert!(!s.firing);
        assert_eq!(s.value, Some(5.0));
    }

    #[test]
    fn the_threshold_itself_does_not_fire() {
        let mut s = AlertState::default();
        assert_eq!(s.step(Some(1000.0), 1000.0, None, at(0)), None);
        assert_eq!(
            s.step(Some(1000.5), 1000.0, None, at(1)),
            Some(Transition::Firing)
        );
    }

    #[test]
    fn repeats_at_the_interval_while_firing() {
        let mut s = AlertState::default();
        let every = Some(Duration::from_secs(60));
        assert_eq!(
            s.step(Some(5.0), 1.0, every, at(0)),
            Some(Transition::Firing)
        );
        assert_eq!(s.step(Some(5.0), 1.0, every, at(30)), None);
        assert_eq!(s.step(Some(5.0), 1.0, every, at(59)), None);
        assert_eq!(
            s.step(Some(5.0), 1.0, every, at(60)),
            Some(Transition::Repeat)
        );
        assert_eq!(s.step(Some(5.0), 1.0, every, at(90)), None);
        assert_eq!(
            s.step(Some(5.0), 1.0, every, at(125)),
            Some(Transition::Repeat)
        );
        assert_eq!(s.since, Some(at(0)), "a repeat keeps the start");
        assert_eq!(
            s.step(Some(0.0), 1.0, every, at(130)),
            Some(Transition::Resolved)
        );
        assert_eq!(s.since, None);
    }

    #[test]
    fn an_unknown_value_changes_nothing() {
        let mut s = AlertState::default();
        assert_eq!(s.step(None, 1.0, None, at(0)), None);
        assert_eq!(s, AlertState::default());
        s.step(Some(2.0), 1.0, None, at(1));
        let before = s.clone();
        assert_eq!(s.step(None, 1.0, Some(Duration::ZERO), at(100)), None);
        assert_eq!(s, before, "firing stays firing");
    }

    #[test]
    fn a_restored_state_does_not_notify_again() {
        // What the history gives back after a restart.
        let mut s = AlertState {
            firing: true,
            since: Some(at(0)),
            last_notified: Some(at(0)),
            value: Some(5.0),
        };
        assert_eq!(s.step(Some(6.0), 1.0, None, at(500)), None);
        assert_eq!(
            s.step(Some(6.0), 1.0, Some(Duration::from_secs(3600)), at(600)),
            None,
            "the repeat interval counts from the last notification before the restart"
        );
        assert_eq!(
            s.step(Some(0.0), 1.0, None, at(700)),
            Some(Transition::Resolved)
        );
    }
}
