//! Failure groups: what broke, where, since when, and whether a replay helps.
//!
//! This first version groups dead letters by (DLQ, source topic, stage,
//! error class). Each group has a stable [`fingerprint`] that the filter
//! language accepts (`fingerprint == "…"`), so a group found here can be
//! inspected or replayed as a whole. Message templates join the key later.

use crate::store::StoredRecord;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many sample ids a group keeps.
pub const SAMPLE_IDS: usize = 5;

/// Whether replaying a group can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every failure was retryable: a replay once the cause is gone should work.
    Transient,
    /// No failure was retryable: the records need a fix (or a discard).
    Permanent,
    /// Mixed or unknown (e.g. foreign records that do not say).
    Unknown,
}

/// One failure group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Stable id of the group: a hash of source topic, stage and error class.
    pub fingerprint: String,
    /// The DLQ holding the records.
    pub dlq: String,
    /// The topic the records came from.
    pub source_topic: Option<String>,
    /// The stage that failed.
    pub stage: String,
    /// The error class.
    pub error_class: String,
    /// Records in the group.
    pub count: u64,
    /// When the earliest record first failed.
    pub first_seen: DateTime<Utc>,
    /// When the latest record last failed.
    pub last_seen: DateTime<Utc>,
    /// Whether a replay can help.
    pub verdict: Verdict,
    /// Why the verdict is what it is.
    pub verdict_reason: String,
    /// One error message of the group, as an example.
    pub example_error: String,
    /// A few record ids, for `dlq inspect`.
    pub sample_ids: Vec<String>,
    /// The `--filter` that selects exactly this group.
    pub replay_filter: String,
}

/// The fingerprint of a record's failure group.
pub fn fingerprint(record: &StoredRecord) -> String {
    let l = &record.letter;
    fingerprint_of(
        l.source.topic.as_deref().unwrap_or(""),
        &l.stage,
        &l.error_class,
    )
}

/// The fingerprint of (source topic, stage, error class).
pub fn fingerprint_of(source_topic: &str, stage: &str, error_class: &str) -> String {
    let key = format!("{source_topic}\u{0}{stage}\u{0}{error_class}");
    crate::envelope::sha256_hex(key.as_bytes())[..16].to_owned()
}

#[derive(Debug)]
struct Acc {
    group: Group,
    retryable: u64,
}

/// Builds failure groups incrementally from a scan.
#[derive(Debug, Default)]
pub struct Analyzer {
    groups: BTreeMap<(String, String), Acc>,
}

impl Analyzer {
    /// An empty analyzer.
    pub fn new() -> Self {
        Analyzer::default()
    }

    /// Adds one record.
    pub fn add(&mut self, record: &StoredRecord) {
        let l = &record.letter;
        let fp = fingerprint(record);
        let acc = self
            .groups
            .entry((record.dlq.clone(), fp.clone()))
            .or_insert_with(|| Acc {
                group: Group {
                    replay_filter: format!("fingerprint == \"{fp}\""),
                    fingerprint: fp,
                    dlq: record.dlq.clone(),
                    source_topic: l.source.topic.clone(),
                    stage: l.stage.clone(),
                    error_class: l.error_class.clone(),
                    count: 0,
                    first_seen: l.first_failed_at,
                    last_seen: l.failed_at,
                    verdict: Verdict::Unknown,
                    verdict_reason: String::new(),
                    example_error: l.error.clone(),
                    sample_ids: Vec::new(),
                },
                retryable: 0,
            });
        let g = &mut acc.group;
        g.count += 1;
        g.first_seen = g.first_seen.min(l.first_failed_at);
        g.last_seen = g.last_seen.max(l.failed_at);
        if g.sample_ids.len() < SAMPLE_IDS {
            g.sample_ids.push(l.id.clone());
        }
        if l.retryable {
            acc.retryable += 1;
        }
    }

    /// The groups, largest first.
    pub fn finish(self) -> Vec<Group> {
        let mut out: Vec<Group> = self
            .groups
            .into_values()
            .map(|mut acc| {
                let g = &mut acc.group;
                let (verdict, reason) = if g.error_class == crate::envelope::UNKNOWN_ERROR_CLASS {
                    (
                        Verdict::Unknown,
                        "the records do not say what failed (foreign or raw records)".to_owned(),
                    )
                } else if acc.retryable == g.count {
                    (
                        Verdict::Transient,
                        format!(
                            "all {} failures were retryable ({}); replay once the cause is gone",
                            g.count, g.error_class
                        ),
                    )
                } else if acc.retryable == 0 {
                    (
                        Verdict::Permanent,
                        format!(
                            "no failure was retryable ({}); a replay needs a fix first",
                            g.error_class
                        ),
                    )
                } else {
                    (
                        Verdict::Unknown,
                        format!("{} of {} failures were retryable", acc.retryable, g.count),
                    )
                };
                g.verdict = verdict;
                g.verdict_reason = reason;
                acc.group
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use crate::{DeadLetter, Failure};

    fn rec(id: &str, class: &str, retryable: bool, topic: &str) -> StoredRecord {
        let f = Failure {
            stage: "validate".into(),
            error_class: class.into(),
            message: format!("{class} happened"),
            retryable,
        };
        let mut letter = DeadLetter::new(id, b"{}".to_vec(), &f);
        letter.source.topic = Some(topic.into());
        StoredRecord {
            dlq: format!("dlq.{topic}"),
            status: Status::Pending,
            stored_at: Utc::now(),
            settled_at: None,
            letter,
        }
    }

    #[test]
    fn groups_by_source_stage_and_class_with_verdicts() {
        let mut a = Analyzer::new();
        for i in 0..3 {
            a.add(&rec(
                &format!("t{i}"),
                "downstream.timeout",
                true,
                "rss.events",
            ));
        }
        a.add(&rec("w1", "validation.wrong_type", false, "rss.events"));
        a.add(&rec(
            "w2",
            "validation.wrong_type",
            false,
            "polymarket.price_hourly",
        ));
        let groups = a.finish();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[0].verdict, Verdict::Transient);
        assert_eq!(groups[0].sample_ids, vec!["t0", "t1", "t2"]);
        assert!(groups[1..].iter().all(|g| g.verdict == Verdict::Permanent));
        assert_ne!(groups[1].fingerprint, groups[2].fingerprint);
    }

    #[test]
    fn mixed_retryability_is_unknown() {
        let mut a = Analyzer::new();
        a.add(&rec("a", "x.y", true, "t"));
        a.add(&rec("b", "x.y", false, "t"));
        let g = &a.finish()[0];
        assert_eq!(g.verdict, Verdict::Unknown);
        assert!(g.verdict_reason.contains("1 of 2"));
    }

    #[test]
    fn replay_filter_selects_exactly_the_group() {
        let mut a = Analyzer::new();
        let r1 = rec("a", "x.y", true, "t");
        let r2 = rec("b", "x.z", true, "t");
        a.add(&r1);
        a.add(&r2);
        for g in a.finish() {
            let f = crate::filter::Filter::parse(&g.replay_filter).expect("filter");
            assert_eq!(f.matches(&r1), g.error_class == "x.y");
            assert_eq!(f.matches(&r2), g.error_class == "x.z");
        }
    }
}
