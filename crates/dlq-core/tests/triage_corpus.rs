//! The shipped triage rules against the labeled corpus
//! `tests/corpus/triage.tsv`: realistic dead-letter error messages of the
//! families a Kafka / HTTP / database / cloud pipeline produces, each with the
//! verdict a data engineer expects.
//!
//! Required (issue 13): at least 80% of the clearly transient and of the
//! clearly permanent messages get their verdict, and at most 20% of all
//! messages stay unknown. The figures are printed (`--nocapture`).

use dlq_core::analyze::Verdict;
use dlq_core::triage::Triage;
use std::collections::BTreeMap;

struct Labeled {
    verdict: String,
    family: String,
    message: String,
}

fn corpus(name: &str) -> Vec<Labeled> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("corpus file");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.splitn(3, '\t');
            let mut next = || cols.next().expect("three tab-separated columns").to_owned();
            Labeled {
                verdict: next(),
                family: next(),
                message: next().replace("\\n", "\n"),
            }
        })
        .collect()
}

/// (right, total) per expected verdict.
type Tally = BTreeMap<String, (usize, usize)>;

#[test]
fn the_shipped_rules_get_transient_and_permanent_verdicts_right_on_the_corpus() {
    let corpus = corpus("triage.tsv");
    assert!(corpus.len() >= 200, "{} lines", corpus.len());
    let s = score(&corpus);
    for v in ["transient", "permanent"] {
        let r = s.recall(v);
        assert!(r >= 0.8, "{v}: {:.1}% right\n{}", 100.0 * r, s.misses);
    }
    assert!(
        s.unknown_share <= 0.2,
        "{:.1}% unknown\n{}",
        100.0 * s.unknown_share,
        s.misses
    );
}

/// The rules were never tuned on these messages: an estimate of how they do
/// on wordings nobody wrote a pattern for. When no rule knows a wording the
/// verdict must be `unknown`, not a wrong one: a wrong "transient" replays
/// records that need a fix. Measured when written: transient 14/18,
/// permanent 10/16, 30% unknown, no wrong verdict.
#[test]
fn the_shipped_rules_say_unknown_rather_than_wrong_on_messages_they_were_not_tuned_on() {
    let corpus = corpus("triage_holdout.tsv");
    assert!(corpus.len() >= 40, "{} lines", corpus.len());
    let s = score(&corpus);
    assert!(
        s.precision >= 0.95,
        "{:.1}% of verdicts right\n{}",
        100.0 * s.precision,
        s.misses
    );
    assert!(
        s.unknown_share <= 0.35,
        "{:.1}% unknown\n{}",
        100.0 * s.unknown_share,
        s.misses
    );
}

struct Score {
    tally: Tally,
    /// Share of messages whose verdict is `unknown`.
    unknown_share: f64,
    /// Share of right verdicts among messages with a verdict other than
    /// `unknown`.
    precision: f64,
    misses: String,
}

impl Score {
    fn recall(&self, verdict: &str) -> f64 {
        let (right, total) = self.tally[verdict];
        right as f64 / total.max(1) as f64
    }
}

fn score(corpus: &[Labeled]) -> Score {
    let triage = Triage::builtin();
    let mut tally = Tally::new();
    let mut unknown = 0;
    let (mut known, mut known_right) = (0usize, 0usize);
    let mut family_right = 0;
    let mut misses = Vec::new();
    for l in corpus {
        let got = triage.message(None, &l.message);
        let verdict = got.map_or(Verdict::Unknown, |t| t.rule.verdict);
        if verdict == Verdict::Unknown {
            unknown += 1;
        } else {
            known += 1;
            known_right += usize::from(verdict.as_str() == l.verdict);
        }
        let e = tally.entry(l.verdict.clone()).or_default();
        e.1 += 1;
        if verdict.as_str() == l.verdict {
            e.0 += 1;
        } else {
            misses.push(format!(
                "  expected {:<13} got {:<13} ({}) {}",
                l.verdict,
                verdict.as_str(),
                got.map_or("no rule", |t| t.rule.name.as_str()),
                l.message.lines().next().unwrap_or("")
            ));
        }
        if got.is_some_and(|t| t.rule.class.split('.').next() == Some(l.family.as_str())) {
            family_right += 1;
        }
    }
    let share = |(right, total): (usize, usize)| right as f64 / total.max(1) as f64;
    println!("triage corpus: {} messages", corpus.len());
    for (v, &(right, total)) in &tally {
        println!(
            "  {v:<13} {right:>3}/{total:<3} right ({:.1}%)",
            100.0 * share((right, total))
        );
    }
    let unknown_share = unknown as f64 / corpus.len() as f64;
    println!(
        "  unknown verdicts: {unknown} ({:.1}%); right among the others: {known_right}/{known}; \
         class family as labeled: {:.1}%",
        100.0 * unknown_share,
        100.0 * family_right as f64 / corpus.len() as f64
    );
    println!("misses:\n{}", misses.join("\n"));
    Score {
        tally,
        unknown_share,
        precision: known_right as f64 / known.max(1) as f64,
        misses: misses.join("\n"),
    }
}
