//! The shipped triage rules against the labeled corpus
//! `tests/corpus/triage.tsv`: realistic dead-letter error messages of the
//! families a Kafka / HTTP / database / cloud pipeline produces, each with the
//! verdict a data engineer expects.
//!
//! Required (issue 13): at least 80% of the clearly transient and of the
//! clearly permanent messages get their verdict, and at most 20% of all
//! messages stay unknown, on the tuned corpus and on the held-out ones
//! (`triage_holdout*.tsv`). The figures are printed (`--nocapture`).

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

/// The held-out sets: messages the rules were not tuned on, an estimate of
/// how they do on wordings nobody wrote a pattern for. Required there too:
/// at least 80% of the transient and of the permanent messages right, at
/// most 20% unknown, and never a permanent error called transient (that
/// replays records that need a fix).
///
/// `triage_holdout.tsv` was written after the first rules; its misses were
/// visible when the rules were broadened, so it is now a weaker estimate.
/// `triage_holdout2.tsv` was written after that and measured once, as
/// written: transient 31/32, permanent 32/33, no wrong verdict, 5 unknown
/// (6.3%: the three messages that say nothing, a sarama timeout, a
/// go-playground/validator message).
#[test]
fn the_shipped_rules_get_verdicts_right_on_messages_they_were_not_tuned_on() {
    for (file, min_lines) in [("triage_holdout.tsv", 40), ("triage_holdout2.tsv", 60)] {
        let corpus = corpus(file);
        assert!(corpus.len() >= min_lines, "{file}: {} lines", corpus.len());
        let s = score(&corpus);
        for v in ["transient", "permanent"] {
            let r = s.recall(v);
            assert!(
                r >= 0.8,
                "{file}: {v}: {:.1}% right\n{}",
                100.0 * r,
                s.misses
            );
        }
        assert!(
            s.unknown_share <= 0.2,
            "{file}: {:.1}% unknown\n{}",
            100.0 * s.unknown_share,
            s.misses
        );
        assert_eq!(
            s.permanent_called_transient, 0,
            "{file}: permanent errors called transient\n{}",
            s.misses
        );
        assert!(
            s.precision >= 0.95,
            "{file}: {:.1}% of verdicts right\n{}",
            100.0 * s.precision,
            s.misses
        );
    }
}

struct Score {
    tally: Tally,
    /// Share of messages whose verdict is `unknown`.
    unknown_share: f64,
    /// Share of right verdicts among messages with a verdict other than
    /// `unknown`.
    precision: f64,
    /// Messages labeled permanent whose verdict is transient.
    permanent_called_transient: usize,
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
    let mut permanent_called_transient = 0;
    let mut misses = Vec::new();
    for l in corpus {
        let got = triage.message(None, &l.message);
        let verdict = got.map_or(Verdict::Unknown, |t| t.rule.verdict);
        permanent_called_transient +=
            usize::from(l.verdict == "permanent" && verdict == Verdict::Transient);
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
        permanent_called_transient,
        misses: misses.join("\n"),
    }
}
