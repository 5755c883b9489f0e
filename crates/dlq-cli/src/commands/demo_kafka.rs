//! `dlq demo --kafka HOST:PORT`: the MarketLag loop on a real Kafka cluster.
//!
//! The same steps and accounting as the embedded demo, on real topics:
//! records are written to `rss.events` and `polymarket.price_hourly`; an
//! at-least-once processor per pipeline validates them against a flaky
//! (simulated) downstream, writing valid ones to `<topic>.processed` and
//! failures to `dlq.rss.events` / `dlq.polymarket.price_hourly`; the alert
//! rule and the analysis read the Kafka store; the repairable groups are
//! fixed and replayed exactly-once to their original topic, where the
//! processor picks them up again (a record failing again comes back with
//! `replays + 1`, and this pass parks it at once, to show the loop guard).

use super::demo::{Accounting, ReplayStep, replay_steps, size_alert, trace};
use crate::Outcome;
use crate::cli::{Cli, DemoArgs, Format};
use crate::marketlag::PipelineHandler;
use anyhow::Context as _;
use dlq_core::analyze::Analyzer;
use dlq_core::filter::Filter;
use dlq_core::fix::Fix;
use dlq_core::replay::{ReplayOptions, StoreOutputs, run_to_store};
use dlq_core::store::{Selection, Status};
use dlq_core::{DlqStore as _, RetryPolicy};
use dlq_kafka::processor::{ProcessorConfig, run_at_least_once};
use dlq_kafka::{KafkaConfig, KafkaStore};
use dlq_marketlag::{FailureMix, GeneratorConfig, Limits, Pipeline, SimulatedDownstream};
use std::io::Write as _;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const PARTITIONS: i32 = 3;

fn processed(p: Pipeline) -> String {
    format!("{}.processed", p.topic())
}

fn open(brokers: &str, transactions: bool) -> anyhow::Result<KafkaStore> {
    let mut config = KafkaConfig::from_url(&format!("kafka://{brokers}"))
        .map_err(|e| anyhow::anyhow!("--kafka: {}", e.problems.join("; ")))?;
    config.transactions = transactions;
    KafkaStore::open(config).with_context(|| format!("connecting to Kafka at {brokers}"))
}

fn process(
    store: &mut KafkaStore,
    group: &str,
    pipeline: Pipeline,
    downstream: SimulatedDownstream,
    max_replays: u32,
) -> anyhow::Result<dlq_kafka::processor::ProcessorStats> {
    let mut cfg = ProcessorConfig::new(pipeline.topic(), group, &processed(pipeline));
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    cfg.max_replays = max_replays;
    cfg.stop_when_idle = Some(Duration::from_secs(3));
    let mut handler = PipelineHandler {
        pipeline,
        limits: Limits::default(),
        downstream,
    };
    Ok(run_at_least_once(
        store,
        &cfg,
        &mut handler,
        &AtomicBool::new(false),
    )?)
}

/// Runs the Kafka demo.
pub fn run(cli: &Cli, args: &DemoArgs, brokers: &str) -> anyhow::Result<Outcome> {
    let table = cli.format == Format::Table;
    let say = |text: &str| {
        if table {
            // Progress lines only: a closed stdout must not stop the demo.
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    };
    let mut store = open(brokers, true)?;
    for p in Pipeline::ALL {
        for t in [p.topic().to_owned(), processed(p), p.dlq_topic().to_owned()] {
            if store.topic_partitions(&t)?.is_some() {
                anyhow::bail!(
                    "topic {t} already exists on {brokers}: the Kafka demo writes to fresh MarketLag \
                     topics; delete rss.events*, polymarket.price_hourly* and their dlq.* topics, \
                     or use another cluster"
                );
            }
        }
    }
    // A group of its own: offsets a group committed on topics of the same
    // names that were deleted could otherwise skip records.
    let group = format!("dlq-demo-{}", uuid::Uuid::now_v7().simple());
    let mut acc = Accounting {
        store: format!("kafka://{brokers}"),
        dir: args.dir.clone(),
        ..Accounting::default()
    };
    let mut generated = Vec::new();
    say(&format!(
        "1. write {} records per pipeline to Kafka (seed {}), process them with retries against a flaky downstream",
        args.records, args.seed
    ));
    for (i, pipeline) in Pipeline::ALL.into_iter().enumerate() {
        store.ensure_topic(pipeline.topic(), PARTITIONS)?;
        store.ensure_topic(&processed(pipeline), PARTITIONS)?;
        let config = GeneratorConfig {
            pipeline,
            records: args.records,
            seed: args.seed.wrapping_add(i as u64),
            mix: FailureMix::default(),
        };
        let lines: Vec<Vec<u8>> = dlq_marketlag::generate(&config).map(|r| r.line).collect();
        for chunk in lines.chunks(5000) {
            store.write_records(
                pipeline.topic(),
                chunk.iter().map(|l| (None, l.clone())).collect(),
            )?;
        }
        let s = process(
            &mut store,
            &group,
            pipeline,
            SimulatedDownstream {
                seed: args.seed,
                outage_active: true,
                ..SimulatedDownstream::default()
            },
            3,
        )?;
        acc.records_in += lines.len() as u64;
        acc.dead_lettered += s.dead_lettered;
        acc.recovered_by_retry += s.recovered_by_retry;
        say(&format!(
            "   {:<24} in {:>7}  delivered {:>7}  recovered by retry {:>5}  dead-lettered {:>6} -> {}",
            pipeline.topic(),
            s.consumed,
            s.delivered,
            s.recovered_by_retry,
            s.dead_lettered,
            pipeline.dlq_topic()
        ));
        generated.push((pipeline, lines));
    }

    say(&format!(
        "2. alert rule: DLQ size > {}",
        args.alert_threshold
    ));
    let stats = store.stats()?;
    for p in Pipeline::ALL {
        let pending = stats
            .iter()
            .find(|s| s.dlq == p.dlq_topic())
            .map_or(0, |s| s.pending);
        let alert = size_alert(p.dlq_topic(), pending, args.alert_threshold);
        say(&format!(
            "   {:<30} pending {:>6}  {}",
            alert.dlq,
            alert.value,
            if alert.firing { "FIRING" } else { "ok" }
        ));
        acc.alerts.push(alert);
    }

    let mut analyzer = Analyzer::new();
    for p in Pipeline::ALL {
        for r in store.scan_all(&Selection::pending(Some(p.dlq_topic())), 1000) {
            analyzer.add(&r?);
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

    say("4. fix and replay (exactly-once) to the original topics, then process them again");
    for p in Pipeline::ALL {
        // The last step's records fail again; the reprocessing pass below
        // parks them.
        let steps = replay_steps(p);
        for (filter, fix) in steps {
            let mut options = ReplayOptions::for_dlq(p.dlq_topic());
            options.selection.filter = Some(Filter::parse(&filter)?);
            options.fix = fix.as_deref().map(Fix::compile).transpose()?;
            let to_source_topics = StoreOutputs::kafka(None);
            let r = run_to_store(&mut store, &to_source_topics, &options, None)?;
            acc.replayed += r.replayed;
            say(&format!(
                "   {:<30} {:<62} replayed {:>5}",
                p.dlq_topic(),
                match &fix {
                    Some(f) => format!("{filter} | fix {f}"),
                    None => filter.clone(),
                },
                r.replayed
            ));
            acc.replays.push(ReplayStep {
                dlq: p.dlq_topic().to_owned(),
                filter,
                fix,
                selected: r.selected,
                replayed: r.replayed,
                failed_again: 0,
                parked: 0,
            });
        }
        // The outage is over; records failing again are parked (max 0).
        let s = process(
            &mut store,
            &group,
            p,
            SimulatedDownstream::healthy(args.seed),
            0,
        )?;
        say(&format!(
            "   {:<30} reprocessed {:>5}: delivered {:>5}, failed again and parked {:>4}",
            p.topic(),
            s.consumed,
            s.delivered,
            s.parked
        ));
    }

    for (p, lines) in &generated {
        let selection = Selection {
            dlq: Some(p.dlq_topic().to_owned()),
            statuses: vec![Status::Pending, Status::Parked],
            filter: None,
        };
        let (mut pending, mut parked, mut payloads) = (0, 0, Vec::new());
        for r in store.scan_all(&selection, 1000) {
            let r = r?;
            if r.status == Status::Parked {
                parked += 1;
            } else {
                pending += 1;
            }
            payloads.push(r.letter.payload);
        }
        acc.pending += pending;
        acc.parked += parked;
        acc.dlqs.insert(p.dlq_topic().to_owned(), pending);
        let outputs = store.read_values(&processed(*p))?;
        acc.delivered += outputs.len() as u64;
        let t = trace(*p, lines, &outputs, &payloads);
        acc.lost += t.lost;
        acc.duplicates += t.duplicates;
    }
    super::demo::finish(
        cli.format,
        &acc,
        "5. accounting (every record traced to an output topic or a DLQ topic)",
        &format!("explore: dlq --store kafka://{brokers} stats | analyze | inspect"),
    )
}
