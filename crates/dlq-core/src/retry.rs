//! Retries: how often, how long to wait, and when to give up.
//!
//! The delays come from `backon`'s exponential backoff (with its seedable
//! jitter, so tests are deterministic); this module adds what a DLQ needs on
//! top: the decision to give up because the failure is permanent, because
//! attempts ran out, or because the elapsed-time budget ran out — and it says
//! which, because the reason goes into the dead letter.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a failing record is retried before it goes to the DLQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (1 = never retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(default = "default_initial_backoff", with = "millis")]
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    #[serde(default = "default_max_backoff", with = "millis")]
    pub max_backoff: Duration,
    /// Growth factor of the delay between retries.
    #[serde(default = "default_multiplier")]
    pub multiplier: f32,
    /// Add a random jitter in `[0, delay)` to each delay, so that many
    /// records failing together do not retry together.
    #[serde(default = "default_jitter")]
    pub jitter: bool,
    /// Give up once the delays so far add up to more than this.
    #[serde(default, with = "opt_millis")]
    pub max_elapsed: Option<Duration>,
}

const fn default_max_attempts() -> u32 {
    3
}
const fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
const fn default_multiplier() -> f32 {
    2.0
}
const fn default_jitter() -> bool {
    true
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
            max_elapsed: None,
        }
    }
}

/// Why a record is not retried any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUp {
    /// The failure is permanent: retrying cannot help.
    Permanent,
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The next delay would pass `max_elapsed`.
    ElapsedExhausted,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Stop and dead-letter the record.
    GiveUp(GiveUp),
}

/// The retry state of one record: which attempt it is at and its delays.
#[derive(Debug)]
pub struct RetryState {
    attempts: u32,
    max_attempts: u32,
    backoff: ExponentialBackoff,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Checks the policy; every problem is reported, not just the first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1 (the first attempt)".to_owned());
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            problems.push(format!(
                "multiplier must be a finite number >= 1, got {}",
                self.multiplier
            ));
        }
        if self.initial_backoff > self.max_backoff {
            problems.push(format!(
                "initial_backoff ({:?}) must not exceed max_backoff ({:?})",
                self.initial_backoff, self.max_backoff
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Starts the retry state of one record. `jitter_seed` makes the jitter
    /// reproducible; derive it from the record (or a test seed).
    pub fn start(&self, jitter_seed: u64) -> RetryState {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(self.multiplier.max(1.0))
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(self.max_elapsed);
        if self.jitter {
            builder = builder.with_jitter().with_jitter_seed(jitter_seed);
        }
        RetryState {
            attempts: 0,
            max_attempts: self.max_attempts.max(1),
            backoff: builder.build(),
        }
    }
}

impl RetryState {
    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records a failed attempt and decides what comes next.
    pub fn on_failure(&mut self, retryable: bool) -> Decision {
        self.attempts += 1;
        if !retryable {
            return Decision::GiveUp(GiveUp::Permanent);
        }
        if self.attempts >= self.max_attempts {
            return Decision::GiveUp(GiveUp::AttemptsExhausted);
        }
        match self.backoff.next() {
            Some(delay) => Decision::RetryAfter(delay),
            // backon stops early only when the total-delay budget is spent.
            None => Decision::GiveUp(GiveUp::ElapsedExhausted),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: false,
            max_elapsed: None,
        }
    }

    fn delays(state: &mut RetryState) -> (Vec<Duration>, GiveUp) {
        let mut out = Vec::new();
        loop {
            match state.on_failure(true) {
                Decision::RetryAfter(d) => out.push(d),
                Decision::GiveUp(why) => return (out, why),
            }
        }
    }

    #[test]
    fn exponential_delays_capped_then_attempts_exhausted() {
        let (d, why) = delays(&mut policy().start(0));
        let ms: Vec<u128> = d.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![100, 200, 400, 500]);
        assert_eq!(why, GiveUp::AttemptsExhausted);
    }

    #[test]
    fn permanent_failure_is_never_retried() {
        let mut s = policy().start(0);
        assert_eq!(s.on_failure(false), Decision::GiveUp(GiveUp::Permanent));
        assert_eq!(s.attempts(), 1);
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let mut s = RetryPolicy::no_retries().start(0);
        assert_eq!(
            s.on_failure(true),
            Decision::GiveUp(GiveUp::AttemptsExhausted)
        );
    }

    #[test]
    fn elapsed_budget_stops_retries_early() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_elapsed: Some(Duration::from_millis(350)),
            ..policy()
        };
        let (d, why) = delays(&mut p.start(0));
        assert!(d.iter().sum::<Duration>() <= Duration::from_millis(350));
        assert_eq!(why, GiveUp::ElapsedExhausted);
        assert!(d.len() < 9);
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_bounded() {
        let p = RetryPolicy {
            jitter: true,
            ..policy()
        };
        let (a, _) = delays(&mut p.start(42));
        let (b, _) = delays(&mut p.start(42));
        let (c, _) = delays(&mut p.start(43));
        assert_eq!(a, b, "same seed, same delays");
        assert_ne!(a, c, "different seed, different jitter");
        let (plain, _) = delays(&mut policy().start(42));
        for (j, base) in a.iter().zip(&plain) {
            assert!(j >= base && *j < *base * 2, "{j:?} not in [{base:?}, 2x)");
        }
    }

    #[test]
    fn validate_reports_every_problem() {
        let p = RetryPolicy {
            max_attempts: 0,
            multiplier: 0.5,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate().expect_err("invalid").len(), 3);
        assert!(RetryPolicy::default().validate().is_ok());
    }

    #[test]
    fn policy_parses_from_json_with_defaults() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"max_attempts": 4, "initial_backoff": 5}"#).expect("parse");
        assert_eq!(p.max_attempts, 4);
        assert_eq!(p.initial_backoff, Duration::from_millis(5));
        assert_eq!(p.max_backoff, default_max_backoff());
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"max_atempts": 4}"#).is_err());
    }
}
