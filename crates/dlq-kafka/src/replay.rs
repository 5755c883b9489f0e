//! Replay from Kafka DLQ topics back to Kafka topics.
//!
//! Delivery semantics: with a transactional store (the default), each page of
//! replayed records and their settlements in the ledger are committed in
//! **one Kafka transaction** — a replay killed midway and run again delivers
//! every selected record exactly once to `read_committed` readers and settles
//! it once. With `transactions=false` the same loop is **at-least-once**: a
//! crash between a page's records and its ledger entries replays that page
//! again.
//!
//! Each record goes to the topic it came from (its envelope's source topic,
//! or the original topic named by Kafka Connect or Spring headers), or to
//! `to` when given, with its key and headers, and with lineage headers
//! (`dlq.replay_of`, `dlq.replays`, `dlq.first_failed_at`) so that a
//! processor that fails it again returns it to its DLQ as the next
//! generation — parked past its replay limit instead of looping.

use crate::KafkaStore;
use crate::client::Outgoing;
use crate::processor::{FIRST_FAILED_AT_HEADER, REPLAY_OF_HEADER, REPLAYS_HEADER};
use dlq_core::envelope::Header;
use dlq_core::replay::{
    ReplayError, ReplayOptions, ReplayReport, fixed_payload, pace, report_fix_error,
};
use dlq_core::store::{Batch, DlqStore as _, Settle, Status};
use std::collections::HashMap;
use std::time::Instant;

/// Replays the records `options` selects to Kafka. `to` overrides the
/// original topic. `progress` is called after each committed page.
pub fn replay(
    store: &mut KafkaStore,
    options: &ReplayOptions,
    to: Option<&str>,
    mut progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport {
        target: match to {
            Some(t) => format!("kafka:{t}"),
            None => "kafka:<original topic>".to_owned(),
        },
        dry_run: options.dry_run,
        ..ReplayReport::default()
    };
    let mut partitions: HashMap<String, i32> = HashMap::new();
    let started = Instant::now();
    let mut cursor = None;
    let page_size = options.batch_size.max(1);
    let now = chrono::Utc::now().timestamp_millis();
    loop {
        let page = store.scan(&options.selection, cursor.as_ref(), page_size)?;
        let mut outputs = Vec::new();
        let mut settles = Vec::new();
        let mut stop = false;
        for record in page.records {
            if options.limit.is_some_and(|l| report.selected >= l) {
                stop = true;
                break;
            }
            report.selected += 1;
            pace(options.rate, report.selected, started);
            let Some(payload) = fixed_payload(&record, options, &mut report) else {
                continue;
            };
            let letter = &record.letter;
            let Some(topic) = to
                .map(str::to_owned)
                .or_else(|| letter.source.topic.clone())
            else {
                // Nowhere to send it: it stays pending; say so.
                report_fix_error(
                    &mut report,
                    "no original topic in the record: replay it with --to TOPIC".into(),
                );
                continue;
            };
            let n = match partitions.get(&topic) {
                Some(&n) => n,
                None => {
                    let n = store
                        .topic_partitions(&topic)?
                        .ok_or_else(|| ReplayError::Target {
                            target: format!("kafka:{topic}"),
                            source: std::io::Error::other(format!("topic {topic} does not exist")),
                        })?;
                    partitions.insert(topic.clone(), n);
                    n
                }
            };
            let partition = match letter.source.partition {
                Some(p) if p >= 0 => p % n.max(1),
                _ => stable_partition(letter.key.as_deref().unwrap_or(letter.id.as_bytes()), n),
            };
            let mut headers: Vec<Header> = letter.headers.clone();
            let lineage = [
                (REPLAY_OF_HEADER, letter.id.clone()),
                (REPLAYS_HEADER, letter.replays.to_string()),
                (
                    FIRST_FAILED_AT_HEADER,
                    letter
                        .first_failed_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
            ];
            for (name, value) in lineage {
                headers.push(Header {
                    name: name.to_owned(),
                    value: Some(value.into_bytes()),
                });
            }
            outputs.push(Outgoing {
                topic,
                partition,
                key: letter.key.clone(),
                value: Some(payload),
                headers,
                timestamp_ms: now,
            });
            settles.push(Settle {
                dlq: record.dlq.clone(),
                id: letter.id.clone(),
                outcome: Status::Replayed,
            });
        }
        if !settles.is_empty() {
            let n = settles.len() as u64;
            store.commit_with(
                Batch {
                    settle: &settles,
                    ..Batch::default()
                },
                outputs,
                None,
            )?;
            report.replayed += n;
            if let Some(cb) = progress.as_mut() {
                cb(&report);
            }
        }
        match page.next {
            Some(next) if !stop => cursor = Some(next),
            _ => break,
        }
    }
    Ok(report)
}

fn stable_partition(bytes: &[u8], partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1).unsigned_abs())) as i32
}
