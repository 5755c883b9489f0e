//! A simulated downstream that fails transiently, deterministically.
//!
//! Whether a line fails depends only on a stable hash of (seed, line bytes),
//! never on time, order or a global RNG, so a run is reproducible and a test
//! can predict each line's fate with [`SimulatedDownstream::behaviour`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::class;
use crate::hash::{stable_hash, unit_interval};

/// A downstream that times out on some lines for their first attempts and,
/// during an outage, is unavailable for others.
///
/// Lines are split by the hash `u` of (seed, line) in [0, 1): `u <
/// outage_rate` are *outage* lines, `outage_rate <= u < outage_rate +
/// transient_rate` are *transient* lines, the rest always succeed. The two
/// groups are disjoint. Rates are clamped to [0, 1] (NaN counts as 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedDownstream {
    /// Seed of the hash; another seed picks other lines.
    pub seed: u64,
    /// Fraction of lines that fail their first [`fail_first`] attempts with
    /// `downstream.timeout`, then succeed. Default 0.02.
    ///
    /// [`fail_first`]: SimulatedDownstream::fail_first
    pub transient_rate: f64,
    /// How many attempts of a transient line fail. Default 2, so a retry
    /// policy with 3 or more attempts delivers them.
    pub fail_first: u32,
    /// Fraction of lines that fail every attempt with `downstream.unavailable`
    /// while [`outage_active`] is true. Default 0.005.
    ///
    /// [`outage_active`]: SimulatedDownstream::outage_active
    pub outage_rate: f64,
    /// Whether the outage is on. Default true: the first run dead-letters the
    /// outage lines (retryable), a replay with `false` delivers them.
    pub outage_active: bool,
}

impl Default for SimulatedDownstream {
    fn default() -> Self {
        SimulatedDownstream {
            seed: 0,
            transient_rate: 0.02,
            fail_first: 2,
            outage_rate: 0.005,
            outage_active: true,
        }
    }
}

/// What [`SimulatedDownstream`] does with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Every attempt succeeds.
    Healthy,
    /// The first `failures` attempts time out, then attempts succeed.
    Transient {
        /// How many attempts fail.
        failures: u32,
    },
    /// Every attempt fails while the outage is active; succeeds otherwise.
    Outage,
}

/// A failure of the simulated downstream. Always retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamError {
    /// [`class::DOWNSTREAM_TIMEOUT`] or [`class::DOWNSTREAM_UNAVAILABLE`].
    pub class: &'static str,
    /// A human-readable message.
    pub message: String,
    /// Whether a later attempt may succeed (always true here).
    pub retryable: bool,
}

impl fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DownstreamError {}

fn rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

impl SimulatedDownstream {
    /// A downstream that never fails.
    pub const fn healthy(seed: u64) -> Self {
        SimulatedDownstream {
            seed,
            transient_rate: 0.0,
            fail_first: 0,
            outage_rate: 0.0,
            outage_active: false,
        }
    }

    /// Which group `line` falls in; independent of
    /// [`outage_active`](SimulatedDownstream::outage_active).
    pub fn behaviour(&self, line: &[u8]) -> Behaviour {
        let u = unit_interval(stable_hash(self.seed, line));
        let outage = rate(self.outage_rate);
        if u < outage {
            Behaviour::Outage
        } else if u < outage + rate(self.transient_rate) && self.fail_first > 0 {
            Behaviour::Transient {
                failures: self.fail_first,
            }
        } else {
            Behaviour::Healthy
        }
    }

    /// How many attempts of `line` fail before the first success, or `None`
    /// if none succeeds (an outage line while the outage is active).
    pub fn expected_failures(&self, line: &[u8]) -> Option<u32> {
        match self.behaviour(line) {
            Behaviour::Healthy => Some(0),
            Behaviour::Transient { failures } => Some(failures),
            Behaviour::Outage if self.outage_active => None,
            Behaviour::Outage => Some(0),
        }
    }

    /// Delivers `line` on attempt number `attempt` (1-based; 0 is treated as
    /// 1). Deterministic: the same line and attempt always give the same
    /// result.
    pub fn attempt(&self, line: &[u8], attempt: u32) -> Result<(), DownstreamError> {
        let attempt = attempt.max(1);
        match self.behaviour(line) {
            Behaviour::Transient { failures } if attempt <= failures => Err(DownstreamError {
                class: class::DOWNSTREAM_TIMEOUT,
                message: format!(
                    "downstream timed out after 5000 ms (simulated, attempt {attempt})"
                ),
                retryable: true,
            }),
            Behaviour::Outage if self.outage_active => Err(DownstreamError {
                class: class::DOWNSTREAM_UNAVAILABLE,
                message: format!(
                    "downstream unavailable: connection refused (simulated outage, attempt {attempt})"
                ),
                retryable: true,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"id\":\"line-{i}\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn fractions_match_the_rates() {
        let d = SimulatedDownstream {
            seed: 7,
            transient_rate: 0.05,
            fail_first: 3,
            outage_rate: 0.01,
            outage_active: true,
        };
        let n = 100_000;
        let (mut transient, mut outage) = (0, 0);
        for line in lines(n) {
            match d.behaviour(&line) {
                Behaviour::Transient { failures } => {
                    assert_eq!(failures, 3);
                    transient += 1;
                }
                Behaviour::Outage => outage += 1,
                Behaviour::Healthy => {}
            }
        }
        // 5 standard deviations.
        assert!(
            (transient as f64 - 5000.0).abs() < 5.0 * 69.0,
            "{transient}"
        );
        assert!((outage as f64 - 1000.0).abs() < 5.0 * 32.0, "{outage}");
    }

    #[test]
    fn attempts_follow_expected_failures() {
        let d = SimulatedDownstream {
            seed: 1,
            transient_rate: 0.3,
            fail_first: 2,
            outage_rate: 0.2,
            outage_active: true,
        };
        let recovered = SimulatedDownstream {
            outage_active: false,
            ..d.clone()
        };
        let mut seen = [0; 3];
        for line in lines(2_000) {
            match d.expected_failures(&line) {
                Some(k) => {
                    for a in 1..=k {
                        let e = d.attempt(&line, a).unwrap_err();
                        assert_eq!(e.class, class::DOWNSTREAM_TIMEOUT);
                        assert!(e.retryable);
                    }
                    assert_eq!(d.attempt(&line, k + 1), Ok(()));
                    assert_eq!(d.attempt(&line, k + 10), Ok(()));
                    seen[usize::from(k > 0)] += 1;
                }
                None => {
                    for a in [1, 2, 50] {
                        let e = d.attempt(&line, a).unwrap_err();
                        assert_eq!(e.class, class::DOWNSTREAM_UNAVAILABLE);
                        assert!(e.retryable);
                    }
                    assert_eq!(recovered.expected_failures(&line), Some(0));
                    assert_eq!(recovered.attempt(&line, 1), Ok(()));
                    seen[2] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
    }

    #[test]
    fn seed_changes_which_lines_fail() {
        let a = SimulatedDownstream::default();
        let b = SimulatedDownstream {
            seed: 99,
            ..a.clone()
        };
        let differ = lines(5_000)
            .iter()
            .filter(|l| a.behaviour(l) != b.behaviour(l))
            .count();
        assert!(differ > 50, "{differ}");
    }

    #[test]
    fn healthy_and_degenerate_rates() {
        let h = SimulatedDownstream::healthy(3);
        for line in lines(1_000) {
            assert_eq!(h.attempt(&line, 0), Ok(()));
        }
        let weird = SimulatedDownstream {
            seed: 0,
            transient_rate: f64::NAN,
            fail_first: 1,
            outage_rate: 7.0,
            outage_active: true,
        };
        assert!(
            lines(100)
                .iter()
                .all(|l| weird.behaviour(l) == Behaviour::Outage)
        );
        let all_transient = SimulatedDownstream {
            transient_rate: 1.0,
            outage_rate: -1.0,
            ..weird
        };
        assert!(
            lines(100)
                .iter()
                .all(|l| all_transient.expected_failures(l) == Some(1))
        );
        // Attempt 0 counts as the first attempt.
        assert!(all_transient.attempt(b"x", 0).is_err());
        assert!(all_transient.attempt(b"x", 2).is_ok());
    }

    #[test]
    fn config_parses_with_defaults() {
        let d: SimulatedDownstream =
            serde_json::from_str(r#"{"seed":5,"outage_active":false}"#).unwrap();
        assert_eq!(
            d,
            SimulatedDownstream {
                seed: 5,
                outage_active: false,
                ..SimulatedDownstream::default()
            }
        );
        assert!(serde_json::from_str::<SimulatedDownstream>(r#"{"sede":5}"#).is_err());
    }
}
