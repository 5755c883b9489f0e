//! The ratio table printed at the end of a bench run.
//!
//! Criterion reports each benchmark on its own; the figure that matters here
//! is the ratio of a dlq benchmark to its baseline. After criterion has run,
//! [`print_ratios`] reads the estimates it just wrote and prints one
//! Markdown table row per pair. Estimates older than the run (from an
//! earlier run, when a filter skipped a benchmark this time) are never mixed
//! in: such a pair is reported as not measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// A dlq benchmark and the baseline it is compared with.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The criterion group, e.g. `encode_json`.
    pub group: String,
    /// The dlq benchmark in the group, e.g. `dlq`.
    pub subject: String,
    /// The baseline benchmark in the group, e.g. `naive`.
    pub baseline: String,
    /// Records per iteration (both sides).
    pub records: u64,
    /// Payload bytes per iteration (both sides), for MB/s.
    pub bytes: u64,
}

/// Where criterion writes its results, found the way criterion finds it:
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else cargo's
/// target directory, else `target/criterion`.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_cargo = std::env::var_os("CARGO").and_then(|cargo| {
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(PathBuf::from(meta.get("target_directory")?.as_str()?))
    });
    from_cargo.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// The typical time of one iteration in nanoseconds, as criterion reports it
/// (the slope where it has one, else the mean), from an `estimates.json`.
pub fn typical_ns(estimates: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(estimates).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|k| v.get(k)?.get("point_estimate")?.as_f64())
}

/// The typical time of `group/bench` if criterion wrote it at or after `since`.
fn measured_ns(home: &Path, group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = home.join(group).join(bench).join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    typical_ns(&std::fs::read_to_string(path).ok()?)
}

/// One table row's figures: records/s and MB/s (10^6 bytes) of each side,
/// and the ratio (dlq rate ÷ baseline rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// dlq records per second.
    pub subject_records_per_s: f64,
    /// dlq payload MB per second.
    pub subject_mb_per_s: f64,
    /// Baseline records per second.
    pub baseline_records_per_s: f64,
    /// Baseline payload MB per second.
    pub baseline_mb_per_s: f64,
    /// dlq rate ÷ baseline rate.
    pub ratio: f64,
}

impl Figures {
    /// The figures of `pair` from the two sides' nanoseconds per iteration.
    pub fn new(pair: &Pair, subject_ns: f64, baseline_ns: f64) -> Figures {
        let rate = |ns: f64, n: u64| n as f64 / (ns / 1e9);
        Figures {
            subject_records_per_s: rate(subject_ns, pair.records),
            subject_mb_per_s: rate(subject_ns, pair.bytes) / 1e6,
            baseline_records_per_s: rate(baseline_ns, pair.records),
            baseline_mb_per_s: rate(baseline_ns, pair.bytes) / 1e6,
            ratio: baseline_ns / subject_ns,
        }
    }
}

/// The Markdown table of `pairs`, from the estimates criterion wrote at or
/// after `since` (the start of the run).
pub fn ratio_table(pairs: &[Pair], since: SystemTime) -> String {
    let home = criterion_home();
    let mut out = String::from(
        "| group | dlq | records/s | MB/s | baseline | records/s | MB/s | ratio |\n\
         |---|---|---:|---:|---|---:|---:|---:|\n",
    );
    for pair in pairs {
        let subject = measured_ns(&home, &pair.group, &pair.subject, since);
        let baseline = measured_ns(&home, &pair.group, &pair.baseline, since);
        let (Some(s), Some(b)) = (subject, baseline) else {
            let _ = writeln!(
                out,
                "| {} | {} | – | – | {} | – | – | not measured in this run |",
                pair.group, pair.subject, pair.baseline
            );
            continue;
        };
        let f = Figures::new(pair, s, b);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {} | {:.1} | {:.2}× |",
            pair.group,
            pair.subject,
            thousands(f.subject_records_per_s),
            f.subject_mb_per_s,
            pair.baseline,
            thousands(f.baseline_records_per_s),
            f.baseline_mb_per_s,
            f.ratio
        );
    }
    out
}

/// Prints [`ratio_table`] to stdout, under a title; a single line instead
/// when criterion measured nothing (test or list mode, or a filter that
/// matched none of the pairs).
pub fn print_ratios(title: &str, pairs: &[Pair], since: SystemTime) {
    let home = criterion_home();
    let any = pairs.iter().any(|p| {
        measured_ns(&home, &p.group, &p.subject, since).is_some()
            || measured_ns(&home, &p.group, &p.baseline, since).is_some()
    });
    if any {
        println!(
            "\n{title} (ratio = dlq rate ÷ baseline rate)\n\n{}",
            ratio_table(pairs, since)
        );
    } else {
        println!("\n{title}: nothing measured in this run, no ratios");
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_prefers_the_slope_and_falls_back_to_the_mean() {
        let with_slope = r#"{"mean":{"point_estimate":20.0},"slope":{"point_estimate":10.0}}"#;
        let flat = r#"{"mean":{"point_estimate":20.0},"slope":null}"#;
        assert_eq!(typical_ns(with_slope), Some(10.0));
        assert_eq!(typical_ns(flat), Some(20.0));
        assert_eq!(typical_ns("not json"), None);
    }

    #[test]
    fn figures_are_rates_and_the_ratio_is_subject_over_baseline() {
        let pair = Pair {
            group: "g".into(),
            subject: "dlq".into(),
            baseline: "naive".into(),
            records: 1,
            bytes: 1_000,
        };
        // dlq takes 1 µs, the baseline 2 µs: dlq is twice as fast.
        let f = Figures::new(&pair, 1_000.0, 2_000.0);
        assert_eq!(f.subject_records_per_s, 1e6);
        assert_eq!(f.subject_mb_per_s, 1_000.0);
        assert_eq!(f.baseline_records_per_s, 5e5);
        assert_eq!(f.ratio, 2.0);
    }

    #[test]
    fn stale_or_missing_estimates_are_reported_as_not_measured() {
        let pair = Pair {
            group: "no_such_group_for_a_test".into(),
            subject: "dlq".into(),
            baseline: "naive".into(),
            records: 1,
            bytes: 1,
        };
        let table = ratio_table(&[pair], SystemTime::now());
        assert!(table.contains("not measured in this run"), "{table}");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
    }
}
