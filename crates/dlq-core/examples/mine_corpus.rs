//! Mines error messages from a file and prints throughput and clusters.
//!
//! ```text
//! cargo run --release -p dlq-core --example mine_corpus -- [FILE] [options]
//! ```
//!
//! FILE defaults to the labeled corpus, `tests/corpus/messages.jsonl`. A line
//! that is a JSON object with a `message` string is that message (and its
//! `group`, if any, is the true group, for the accuracy); any other line is a
//! message by itself.
//!
//! Options:
//! * `--drain3`: drain3's algorithm (no constant-word rule, no LRU bound),
//!   still with root causes and masking;
//! * `--version N`: the miner's algorithm version (`MinerConfig::version`;
//!   default the latest, 1 with `--drain3`);
//! * `--repeat N`: mine the messages N times over (fresh miner each time)
//!   and report the best time, for a steadier figure (default 5);
//! * `--json`: one JSON object with the figures instead of text;
//! * `--dump-prepared PATH`: write each message as mined (root cause, masked),
//!   one JSON string per line, for comparing with another implementation;
//! * `--dump-clusters PATH`: write each message's cluster id, one per line;
//! * `--quiet`: do not list the clusters.
//!
//! Throughput counts the whole pipeline per message: root cause, masking,
//! tokenizing and mining; not reading the file.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use dlq_core::mine::{ClusterId, Miner, MinerConfig};

struct Args {
    file: String,
    drain3: bool,
    repeat: usize,
    json: bool,
    dump: Option<String>,
    dump_clusters: Option<String>,
    quiet: bool,
    version: Option<u32>,
}

fn args() -> Args {
    let mut a = Args {
        file: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/messages.jsonl").to_owned(),
        drain3: false,
        repeat: 5,
        json: false,
        dump: None,
        dump_clusters: None,
        quiet: false,
        version: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--drain3" => a.drain3 = true,
            "--json" => a.json = true,
            "--quiet" => a.quiet = true,
            "--repeat" => a.repeat = it.next().and_then(|v| v.parse().ok()).unwrap_or(5).max(1),
            "--dump-prepared" => a.dump = it.next(),
            "--dump-clusters" => a.dump_clusters = it.next(),
            "--version" => a.version = it.next().and_then(|v| v.parse().ok()),
            "-h" | "--help" => {
                println!(
                    "usage: mine_corpus [FILE] [--drain3] [--version N] [--repeat N] [--json] [--dump-prepared PATH] [--dump-clusters PATH] [--quiet]"
                );
                std::process::exit(0);
            }
            _ => a.file = arg,
        }
    }
    a
}

fn main() {
    let args = args();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.file);
            std::process::exit(2);
        }
    };
    let mut messages = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines() {
        let parsed = serde_json::from_str::<serde_json::Value>(line).ok();
        match parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(|m| m.as_str())
        {
            Some(m) => {
                messages.push(m.to_owned());
                labels.push(
                    parsed
                        .as_ref()
                        .and_then(|v| v.get("group"))
                        .and_then(|g| g.as_str())
                        .map(str::to_owned),
                );
            }
            None => {
                messages.push(line.to_owned());
                labels.push(None);
            }
        }
    }
    let mut config = if args.drain3 {
        MinerConfig::drain3()
    } else {
        MinerConfig::default()
    };
    if let Some(v) = args.version {
        config.version = v;
    }

    let mut best = Duration::MAX;
    let mut result = None;
    for _ in 0..args.repeat {
        let mut miner = Miner::with_config(config).expect("valid config");
        let start = Instant::now();
        let ids: Vec<ClusterId> = messages.iter().map(|m| miner.add(m)).collect();
        best = best.min(start.elapsed());
        result = Some((miner, ids));
    }
    let (miner, ids) = result.expect("at least one run");
    let per_sec = messages.len() as f64 / best.as_secs_f64();

    if let Some(path) = &args.dump {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("dump file"));
        let mut buf = String::new();
        for m in &messages {
            miner.prepare(m, &mut buf);
            writeln!(out, "{}", serde_json::to_string(&buf).expect("string")).expect("write");
        }
    }

    if let Some(path) = &args.dump_clusters {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("dump file"));
        for id in &ids {
            writeln!(out, "{id}").expect("write");
        }
    }

    let accuracy = if labels.iter().all(Option::is_some) && !labels.is_empty() {
        let labels: Vec<&str> = labels.iter().map(|l| l.as_deref().unwrap_or("")).collect();
        Some(accuracy(&labels, &ids))
    } else {
        None
    };

    if args.json {
        let v = serde_json::json!({
            "implementation": if args.drain3 { "dlq (drain3 mode)" } else { "dlq" },
            "version": config.version,
            "messages": messages.len(),
            "seconds": best.as_secs_f64(),
            "messages_per_second": per_sec,
            "clusters": miner.len(),
            "accuracy": accuracy,
        });
        println!("{v}");
    } else {
        println!(
            "{} messages in {:.3} ms (best of {}): {:.0} messages/s, {} clusters{}",
            messages.len(),
            best.as_secs_f64() * 1e3,
            args.repeat,
            per_sec,
            miner.len(),
            accuracy.map_or(String::new(), |a| format!(", grouping accuracy {a:.4}"))
        );
    }
    if !args.quiet && !args.json {
        let mut clusters = miner.clusters();
        clusters.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.cmp(&b.id)));
        for c in clusters {
            println!("{:>6} {:>6}  {}", c.id, c.size, c.template);
        }
    }
}

/// Share of messages whose cluster holds exactly the messages of their true
/// group (the definition in `tests/template_accuracy.rs`).
fn accuracy(labels: &[&str], ids: &[ClusterId]) -> f64 {
    let mut per_label: HashMap<&str, usize> = HashMap::new();
    let mut per_cluster: HashMap<ClusterId, usize> = HashMap::new();
    let mut per_pair: HashMap<(&str, ClusterId), usize> = HashMap::new();
    for (&l, &c) in labels.iter().zip(ids) {
        *per_label.entry(l).or_default() += 1;
        *per_cluster.entry(c).or_default() += 1;
        *per_pair.entry((l, c)).or_default() += 1;
    }
    let correct = labels
        .iter()
        .zip(ids)
        .filter(|&(&l, &c)| per_label[l] == per_cluster[&c] && per_pair[&(l, c)] == per_label[l])
        .count();
    correct as f64 / labels.len() as f64
}
