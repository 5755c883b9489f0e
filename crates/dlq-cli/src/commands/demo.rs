//! `dlq demo`: the MarketLag DLQ loop end to end, and an accounting that
//! checks every generated record instead of assuming.
//!
//! Steps: generate both pipelines' records; process them with retries
//! against a flaky simulated downstream; check the alert rule (DLQ size
//! above a threshold); analyze the failures; replay the groups a fix or a
//! retry can repair through the pipeline again; show that an unfixable group
//! is parked instead of looping; triage dead letters in the seed's own
//! format (`{original_record, error, timestamp}`, as the MarketLag Lambda
//! writes them); then trace every generated line to the output or to a DLQ.

use crate::Outcome;
use crate::cli::{Cli, DemoArgs, Format};
use crate::commands::process::run_with_progress;
use crate::commands::replay::{To, replay};
use crate::marketlag::PipelineHandler;
use crate::output;
use anyhow::Context as _;
use dlq_core::analyze::{Analyzer, Group};
use dlq_core::filter::Filter;
use dlq_core::fix::Fix;
use dlq_core::process::{Input, ProcessConfig, input_id, read_lines};
use dlq_core::replay::{FileFormat, ReplayOptions};
use dlq_core::store::{Selection, Status};
use dlq_core::{DlqStore as _, RetryPolicy};
use dlq_marketlag::{FailureMix, GeneratorConfig, Limits, Pipeline, SimulatedDownstream};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The accounting `dlq demo --format json` prints (documented in docs/cli.md).
#[derive(Debug, Default, Serialize)]
pub struct Accounting {
    /// Records generated, both pipelines.
    pub records_in: u64,
    /// Records in the outputs: first pass plus replays.
    pub delivered: u64,
    /// Records the first pass sent to a DLQ.
    pub dead_lettered: u64,
    /// Records the first pass delivered only thanks to a retry.
    pub recovered_by_retry: u64,
    /// Dead letters replayed and delivered.
    pub replayed: u64,
    /// Dead letters still pending.
    pub pending: u64,
    /// Dead letters parked after failing too many replays.
    pub parked: u64,
    /// Generated records found neither in an output nor in a DLQ.
    pub lost: u64,
    /// Records delivered more than once, or both delivered and still in a DLQ.
    pub duplicates: u64,
    /// DLQ name → pending records of this run.
    pub dlqs: BTreeMap<String, u64>,
    /// Alerts the size rule raised after processing.
    pub alerts: Vec<Alert>,
    /// Failure groups found after processing.
    pub groups: Vec<Group>,
    /// Replays run, in order.
    pub replays: Vec<ReplayStep>,
    /// The seed-format dead letters the demo wrote and triaged (the
    /// embedded demo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_format: Option<SeedFormat>,
    /// The store used.
    pub store: String,
    /// Where the inputs and outputs are.
    pub dir: PathBuf,
}

/// One alert of the size rule.
#[derive(Debug, Serialize)]
pub struct Alert {
    /// The rule.
    pub rule: String,
    /// The DLQ.
    pub dlq: String,
    /// Pending records.
    pub value: u64,
    /// The threshold.
    pub threshold: u64,
    /// Whether it fires.
    pub firing: bool,
}

/// Dead letters in the seed's format, `{original_record, error, timestamp}`,
/// as the MarketLag Lambda's `send_to_dlq` wrote them: only an error
/// message, no class and no verdict, which the triage rules give.
#[derive(Debug, Serialize)]
pub struct SeedFormat {
    /// The NDJSON file they were written to (for `dlq import`).
    pub file: PathBuf,
    /// How many.
    pub records: u64,
    /// Their groups, as `dlq analyze` reports them after an import.
    pub groups: Vec<Group>,
}

/// The DLQ of the seed-format dead letters: where `dlq import` puts records
/// that name no source topic, so that importing them leaves the demo's
/// DLQs as the accounting counted them.
const SEED_FORMAT_DLQ: &str = "dlq.imported";

/// The seed-format dead letters of the demo, as (error, hours before now it
/// failed): what the MarketLag Lambda hits writing to Kafka, calling the
/// feeds and writing to its database.
const SEED_FORMAT_ERRORS: &[(&str, i64)] = &[
    (
        "Message production error: MessageTimedOut (Local: Message timed out)",
        5,
    ),
    (
        "Message production error: MessageTimedOut (Local: Message timed out)",
        5,
    ),
    (
        "Message production error: MessageTimedOut (Local: Message timed out)",
        2,
    ),
    ("HTTP 429 Too Many Requests", 3),
    ("HTTP 429 Too Many Requests", 1),
    (
        "ERROR: deadlock detected\nDETAIL: Process 4242 waits for ShareLock on transaction 981; blocked by process 4243.",
        4,
    ),
    (
        "ERROR: deadlock detected\nDETAIL: Process 4250 waits for ShareLock on transaction 990; blocked by process 4251.",
        1,
    ),
    (
        "java.lang.NumberFormatException: For input string: \"0,42\"",
        3,
    ),
    (
        "java.lang.NumberFormatException: For input string: \"n/a\"",
        0,
    ),
    (
        "duplicate key value violates unique constraint \"price_hourly_pkey\"",
        2,
    ),
    (
        "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        0,
    ),
];

/// Writes the seed-format dead letters to `file` and analyzes them as
/// `dlq import` (into [`SEED_FORMAT_DLQ`]) and `dlq analyze` would, without
/// adding them to the store:
/// the demo's accounting and replays stay about the generated records.
fn seed_format(file: PathBuf) -> anyhow::Result<SeedFormat> {
    let now = chrono::Utc::now();
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut analyzer = Analyzer::new();
    for (i, (error, hours_ago)) in SEED_FORMAT_ERRORS.iter().enumerate() {
        let line = serde_json::json!({
            "original_record": {"event_id": format!("evt-seed-{i}"), "price": 0.42},
            "error": error,
            "timestamp": (now - chrono::Duration::hours(*hours_ago)).to_rfc3339(),
        })
        .to_string();
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        let letter = dlq_core::envelope::decode(line.as_bytes(), &format!("seed-format:{i}"));
        analyzer.add(&dlq_core::store::StoredRecord {
            dlq: SEED_FORMAT_DLQ.to_owned(),
            status: Status::Pending,
            stored_at: now,
            settled_at: None,
            letter,
        });
    }
    w.flush()?;
    Ok(SeedFormat {
        file,
        records: SEED_FORMAT_ERRORS.len() as u64,
        groups: analyzer.finish(),
    })
}

/// One replay the demo ran.
#[derive(Debug, Serialize)]
pub struct ReplayStep {
    /// The DLQ.
    pub dlq: String,
    /// The filter.
    pub filter: String,
    /// The fix, if any.
    pub fix: Option<String>,
    /// Records selected.
    pub selected: u64,
    /// Records delivered.
    pub replayed: u64,
    /// Records that failed again.
    pub failed_again: u64,
    /// Records parked.
    pub parked: u64,
}

struct PipelineRun {
    pipeline: Pipeline,
    input: PathBuf,
    output: PathBuf,
    id_prefix: String,
}

/// Runs `dlq demo`.
pub fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<Outcome> {
    if let Some(brokers) = &args.kafka {
        return super::demo_kafka::run(cli, args, brokers);
    }
    let table = cli.format == Format::Table;
    let say = |text: &str| {
        if table {
            // Progress lines only: a closed stdout must not stop the demo.
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    };
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing the demo directory {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(args.dir.join("in"))?;
    std::fs::create_dir_all(args.dir.join("out"))?;
    let store_url = match &cli.store {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.dir.join("dlq.db").display()),
    };
    let mut store = crate::store::open(&store_url)?;
    let progress = !cli.no_progress;
    let mut acc = Accounting {
        store: store_url.clone(),
        dir: args.dir.clone(),
        ..Accounting::default()
    };

    // 1. Generate and process.
    say(&format!(
        "1. generate {} records per pipeline (seed {}), process with retries against a flaky downstream",
        args.records, args.seed
    ));
    let mut runs = Vec::new();
    for (i, pipeline) in Pipeline::ALL.into_iter().enumerate() {
        let input = args
            .dir
            .join("in")
            .join(format!("{}.ndjson", pipeline.topic()));
        let output = args
            .dir
            .join("out")
            .join(format!("{}.ndjson", pipeline.topic()));
        let config = GeneratorConfig {
            pipeline,
            records: args.records,
            seed: args.seed.wrapping_add(i as u64),
            mix: FailureMix::default(),
        };
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for r in dlq_marketlag::generate(&config) {
            w.write_all(&r.line)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        drop(w);
        let source = Input::File(input.clone());
        let mut cfg = ProcessConfig::new(
            source.clone(),
            output.clone(),
            pipeline.dlq_topic(),
            pipeline.topic(),
        );
        cfg.retry = RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let mut handler = PipelineHandler {
            pipeline,
            limits: Limits::default(),
            downstream: SimulatedDownstream {
                seed: args.seed,
                outage_active: true,
                ..SimulatedDownstream::default()
            },
        };
        let s = run_with_progress(&cfg, &mut handler, &mut store, progress)?;
        acc.records_in += s.records_in;
        acc.dead_lettered += s.dead_lettered;
        acc.recovered_by_retry += s.recovered_by_retry;
        say(&format!(
            "   {:<24} in {:>7}  delivered {:>7}  recovered by retry {:>5}  dead-lettered {:>6} -> {}",
            pipeline.topic(),
            s.records_in,
            s.delivered,
            s.recovered_by_retry,
            s.dead_lettered,
            pipeline.dlq_topic()
        ));
        runs.push(PipelineRun {
            pipeline,
            input,
            output,
            id_prefix: format!("file:{}:", input_id(&source)),
        });
    }

    // 2. The alert rule.
    say(&format!(
        "2. alert rule: DLQ size > {}",
        args.alert_threshold
    ));
    for run in &runs {
        let pending = this_run_pending(&store, run)?.0;
        let alert = size_alert(run.pipeline.dlq_topic(), pending, args.alert_threshold);
        say(&format!(
            "   {:<30} pending {:>6}  {}",
            alert.dlq,
            alert.value,
            if alert.firing { "FIRING" } else { "ok" }
        ));
        acc.alerts.push(alert);
    }

    // 3. Analyze.
    let mut analyzer = Analyzer::new();
    for run in &runs {
        for r in store.scan_all(&Selection::pending(Some(run.pipeline.dlq_topic())), 1000) {
            let r = r?;
            if r.letter.id.starts_with(&run.id_prefix) {
                analyzer.add(&r);
            }
        }
    }
    acc.groups = analyzer.finish();
    say(&format!("3. analyze: {} failure groups", acc.groups.len()));
    for g in &acc.groups {
        say(&format!(
            "   {:>6}  {:<30} {:<40} {:?}",
            g.count, g.dlq, g.error_class, g.verdict
        ));
    }

    // 4. Fix and replay through the pipeline; retry the transient group.
    say("4. fix and replay");
    for run in &runs {
        let dlq = run.pipeline.dlq_topic();
        let to = To::Pipeline(&run.output);
        // The careless replay (last step) parks what fails again at once.
        let steps = replay_steps(run.pipeline);
        let last = steps.len() - 1;
        let steps = steps
            .into_iter()
            .enumerate()
            .map(|(i, (filter, fix))| (filter, fix, if i == last { 0 } else { 3 }));
        for (filter, fix, max_replays) in steps {
            let mut options = ReplayOptions::for_dlq(dlq);
            options.selection.filter = Some(Filter::parse(&filter)?);
            options.fix = fix.as_deref().map(Fix::compile).transpose()?;
            options.max_replays = max_replays;
            let r = replay(
                &mut store,
                dlq,
                &to,
                FileFormat::Payload,
                &options,
                progress,
            )?;
            acc.replayed += r.replayed;
            say(&format!(
                "   {:<30} {:<62} replayed {:>5}  failed again {:>4}  parked {:>4}",
                dlq,
                match &fix {
                    Some(f) => format!("{filter} | fix {f}"),
                    None => filter.clone(),
                },
                r.replayed,
                r.failed_again,
                r.parked
            ));
            acc.replays.push(ReplayStep {
                dlq: dlq.to_owned(),
                filter,
                fix,
                selected: r.selected,
                replayed: r.replayed,
                failed_again: r.failed_again,
                parked: r.parked,
            });
        }
    }

    // 5. The seed's own format, triaged.
    let seed = seed_format(args.dir.join("in").join("seed-format.ndjson"))?;
    say(&format!(
        "5. the seed's DLQ format: {} records as the MarketLag Lambda writes them \
         ({{original_record, error, timestamp}}: no class, no verdict) in {}, triaged:",
        seed.records,
        seed.file.display()
    ));
    for g in &seed.groups {
        say(&format!(
            "   {:>6}  {:<26} {:<14} [{}]",
            g.count,
            g.error_class,
            g.verdict.as_str(),
            g.verdict_rule
        ));
    }
    acc.seed_format = Some(seed);

    // 6. Account for every generated record.
    for run in &runs {
        let (pending, parked, dlq_payloads) = this_run_dead_letters(&store, run)?;
        acc.pending += pending;
        acc.parked += parked;
        acc.dlqs
            .insert(run.pipeline.dlq_topic().to_owned(), pending);
        let outputs = read_lines(&run.output)?;
        acc.delivered += outputs.len() as u64;
        let trace = trace(
            run.pipeline,
            &read_lines(&run.input)?,
            &outputs,
            &dlq_payloads,
        );
        acc.lost += trace.lost;
        acc.duplicates += trace.duplicates;
    }
    finish(
        cli.format,
        &acc,
        "6. accounting (every generated record traced to an output or a DLQ)",
        &format!(
            "explore: dlq --store {store_url} stats | analyze | inspect --dlq dlq.polymarket.price_hourly\n\
             triage the seed format yourself: dlq --store {store_url} import --input {} && dlq --store {store_url} analyze",
            args.dir.join("in").join("seed-format.ndjson").display()
        ),
    )
}

/// The replays the demos run for a pipeline, in order, as (filter, fix):
/// each repairable group with its jq fix, then the transient failures as
/// they are, and last a careless replay of a group no fix repairs (it fails
/// again, which shows parking instead of looping).
pub fn replay_steps(pipeline: Pipeline) -> Vec<(String, Option<String>)> {
    let mut steps: Vec<(String, Option<String>)> = dlq_marketlag::fixes(pipeline)
        .iter()
        .map(|(class, field, fix)| {
            // An empty field means the fix repairs the whole record.
            let filter = if field.is_empty() {
                format!("error_class == \"{class}\"")
            } else {
                format!("error_class == \"{class}\" and payload.{field} exists")
            };
            (filter, Some((*fix).to_owned()))
        })
        .collect();
    steps.push(("retryable".to_owned(), None));
    let unfixable = if pipeline == Pipeline::Polymarket {
        dlq_marketlag::class::PRICE_OUT_OF_RANGE
    } else {
        dlq_marketlag::class::BAD_URL
    };
    steps.push((format!("error_class == \"{unfixable}\""), None));
    steps
}

/// The size alert rule: fires when a DLQ holds more pending records than
/// the threshold.
pub fn size_alert(dlq: &str, pending: u64, threshold: u64) -> Alert {
    Alert {
        rule: format!("dlq_size > {threshold}"),
        dlq: dlq.to_owned(),
        value: pending,
        threshold,
        firing: pending > threshold,
    }
}

/// Prints the accounting (a table with a hint, or JSON) and fails the
/// command when a record was lost.
pub fn finish(
    format: Format,
    acc: &Accounting,
    title: &str,
    hint: &str,
) -> anyhow::Result<Outcome> {
    match format {
        Format::Table => {
            writeln!(std::io::stdout(), "{title}")?;
            let rows: Vec<Vec<String>> = [
                ("records_in", acc.records_in),
                ("delivered", acc.delivered),
                ("dead_lettered", acc.dead_lettered),
                ("recovered_by_retry", acc.recovered_by_retry),
                ("replayed", acc.replayed),
                ("pending", acc.pending),
                ("parked", acc.parked),
                ("lost", acc.lost),
                ("duplicates", acc.duplicates),
            ]
            .iter()
            .map(|(k, v)| vec![format!("   {k}"), v.to_string()])
            .collect();
            output::table(&mut std::io::stdout().lock(), &["", "records"], &rows)?;
            writeln!(std::io::stdout(), "{hint}")?;
        }
        _ => output::json(&mut std::io::stdout().lock(), format, acc)?,
    }
    if acc.lost > 0 {
        anyhow::bail!(
            "{} generated records were lost: this is a bug in dlq",
            acc.lost
        );
    }
    Ok(Outcome::Ok)
}

/// (pending, parked) of this run's dead letters in the pipeline's DLQ.
fn this_run_pending(
    store: &crate::store::AnyStore,
    run: &PipelineRun,
) -> anyhow::Result<(u64, u64)> {
    let (p, k, _) = this_run_dead_letters(store, run)?;
    Ok((p, k))
}

/// Pending and parked dead letters of this run, with their payloads.
fn this_run_dead_letters(
    store: &crate::store::AnyStore,
    run: &PipelineRun,
) -> anyhow::Result<(u64, u64, Vec<Vec<u8>>)> {
    let selection = Selection {
        dlq: Some(run.pipeline.dlq_topic().to_owned()),
        statuses: vec![Status::Pending, Status::Parked],
        filter: None,
    };
    let (mut pending, mut parked, mut payloads) = (0, 0, Vec::new());
    for r in store.scan_all(&selection, 1000) {
        let r = r?;
        if !r.letter.id.starts_with(&run.id_prefix) {
            continue;
        }
        match r.status {
            Status::Parked => parked += 1,
            _ => pending += 1,
        }
        payloads.push(r.letter.payload);
    }
    Ok((pending, parked, payloads))
}

/// Where the generated records ended up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Lines found neither delivered nor in a DLQ.
    pub lost: u64,
    /// Extra deliveries, plus lines both delivered and dead-lettered.
    pub duplicates: u64,
}

/// Traces every generated line to the outputs or the DLQ: by its exact
/// bytes, or by its record id (a fixed record has new bytes, same id).
pub fn trace(
    pipeline: Pipeline,
    generated: &[Vec<u8>],
    outputs: &[Vec<u8>],
    dead: &[Vec<u8>],
) -> Trace {
    // A record that was JSON-encoded twice (a string holding the object) is
    // still identified by the id inside it: `fromjson` repairs it.
    let id_of = |l: &[u8]| {
        dlq_marketlag::record_id(pipeline, l).or_else(|| {
            let inner: String = serde_json::from_slice(l).ok()?;
            dlq_marketlag::record_id(pipeline, inner.as_bytes())
        })
    };
    let mut out_ids: HashMap<String, u64> = HashMap::new();
    let mut out_exact: HashMap<&[u8], u64> = HashMap::new();
    for o in outputs {
        *out_exact.entry(o.as_slice()).or_default() += 1;
        if let Some(id) = id_of(o) {
            *out_ids.entry(id).or_default() += 1;
        }
    }
    let dead_exact: HashSet<&[u8]> = dead.iter().map(Vec::as_slice).collect();
    let dead_ids: HashSet<String> = dead.iter().filter_map(|d| id_of(d)).collect();
    let mut t = Trace::default();
    for line in generated {
        let id = id_of(line);
        let delivered = out_exact.contains_key(line.as_slice())
            || id.as_ref().is_some_and(|i| out_ids.contains_key(i));
        let in_dlq = dead_exact.contains(line.as_slice())
            || id.as_ref().is_some_and(|i| dead_ids.contains(i));
        if !delivered && !in_dlq {
            t.lost += 1;
        }
        if delivered && in_dlq {
            t.duplicates += 1;
        }
    }
    t.duplicates += out_ids.values().map(|n| n - 1).sum::<u64>();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = br#"{"id":"a","x":1}"#;
    const B: &[u8] = br#"{"id":"b","x":1}"#;
    const B_FIXED: &[u8] = br#"{"id":"b","x":2}"#;
    const BAD: &[u8] = b"\xff{";
    const TWICE: &[u8] = br#""{\"id\":\"c\",\"x\":1}""#;
    const TWICE_FIXED: &[u8] = br#"{"id":"c","x":1}"#;

    #[test]
    fn trace_finds_delivered_fixed_and_dead_lettered_records() {
        let t = trace(
            Pipeline::Rss,
            &[A.to_vec(), B.to_vec(), BAD.to_vec(), TWICE.to_vec()],
            &[A.to_vec(), B_FIXED.to_vec(), TWICE_FIXED.to_vec()],
            &[BAD.to_vec()],
        );
        assert_eq!(
            t,
            Trace {
                lost: 0,
                duplicates: 0
            }
        );
    }

    #[test]
    fn trace_counts_lost_and_duplicate_records() {
        let t = trace(
            Pipeline::Rss,
            &[A.to_vec(), B.to_vec(), BAD.to_vec()],
            &[A.to_vec(), A.to_vec()],
            &[B.to_vec()],
        );
        assert_eq!(
            t,
            Trace {
                lost: 1,
                duplicates: 1
            }
        );
        let t = trace(Pipeline::Rss, &[A.to_vec()], &[A.to_vec()], &[A.to_vec()]);
        assert_eq!(t.duplicates, 1, "delivered and still pending");
    }
}
