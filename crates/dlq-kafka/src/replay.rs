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
use crate::store::PendingSettle;
use dlq_core::envelope::Header;
use dlq_core::replay::{
    ReplayError, ReplayOptions, ReplayReport, fixed_payload, pace, report_fix_error,
};
use dlq_core::store::{DlqStore as _, Settle, Status, StoredRecord};
use std::collections::HashMap;
use std::time::Instant;

/// Replays the records `options` selects to Kafka. `to` overrides the
/// original topic. `progress` is called after each committed page.
///
/// Each page is prepared (fixed, paced) with no transaction open, then its
/// records and settlements are sent (one transaction when the store is
/// transactional), and while they travel the next page is scanned; the
/// commit finishes before the next page is prepared. So pages commit in
/// order, a transaction stays open only for about one scan (a replay
/// killed meanwhile leaves an open transaction behind, which holds back
/// read_committed readers until it times out), and a crash redoes at most
/// the page in flight: at-least-once, or exactly-once with transactions,
/// since an uncommitted page's outputs and settlements abort together.
///
/// The replay takes the records the store's index holds when it starts
/// (the first page brings the index up to date); records dead-lettered
/// while it runs are left for the next run.
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
    let page_size = options.batch_size.max(1);
    let now = chrono::Utc::now().timestamp_millis();
    let mut page = store.scan(&options.selection, None, page_size)?;
    let outcome = loop {
        let mut built = Built::default();
        let mut stop = false;
        for record in std::mem::take(&mut page.records) {
            if options.limit.is_some_and(|l| report.selected >= l) {
                stop = true;
                break;
            }
            if let Err(e) = built.add(
                store,
                record,
                options,
                to,
                &mut partitions,
                &mut report,
                started,
                now,
            ) {
                stop = true;
                built.error = Some(e);
                break;
            }
        }
        if let Some(e) = built.error {
            break Err(e);
        }
        let next = page.next.take().filter(|_| !stop);
        let pending = if built.settles.is_empty() {
            None
        } else {
            let n = built.settles.len() as u64;
            match store.start_settle(&built.settles, built.outputs) {
                Ok(p) => Some((p, n)),
                Err(e) => break Err(e.into()),
            }
        };
        // The next page is read while this one's commit travels, from the
        // index as the first page left it: the replay takes the records
        // pending when it started; those dead-lettered meanwhile wait for
        // the next run.
        let scanned = next
            .as_ref()
            .map(|cursor| store.scan_page(&options.selection, Some(cursor), page_size, false));
        if let Some(p) = pending
            && let Err(e) = finish(store, p, &mut report, &mut progress)
        {
            break Err(e);
        }
        match scanned {
            None => break Ok(()),
            Some(Ok(p)) => page = p,
            Some(Err(e)) => break Err(e.into()),
        }
    };
    store.await_visible();
    outcome?;
    Ok(report)
}

fn finish(
    store: &mut KafkaStore,
    (pending, n): (PendingSettle, u64),
    report: &mut ReplayReport,
    progress: &mut Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<(), ReplayError> {
    store.finish_settle(pending)?;
    report.replayed += n;
    if let Some(cb) = progress.as_mut() {
        cb(report);
    }
    Ok(())
}

/// One page's outputs and settlements.
#[derive(Default)]
struct Built {
    outputs: Vec<Outgoing>,
    settles: Vec<Settle>,
    error: Option<ReplayError>,
}

impl Built {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        store: &KafkaStore,
        mut record: StoredRecord,
        options: &ReplayOptions,
        to: Option<&str>,
        partitions: &mut HashMap<String, i32>,
        report: &mut ReplayReport,
        started: Instant,
        now: i64,
    ) -> Result<(), ReplayError> {
        report.selected += 1;
        pace(options.rate, report.selected, started);
        let payload = if options.fix.is_none() && !options.dry_run {
            // Nothing to fix or show: the payload moves, uncopied.
            std::mem::take(&mut record.letter.payload)
        } else {
            match fixed_payload(&record, options, report) {
                Some(p) => p,
                None => return Ok(()),
            }
        };
        let StoredRecord { dlq, letter, .. } = record;
        let Some(topic) = to
            .map(str::to_owned)
            .or_else(|| letter.source.topic.clone())
        else {
            // Nowhere to send it: it stays pending; say so.
            report_fix_error(
                report,
                "no original topic in the record: replay it with --to TOPIC".into(),
            );
            return Ok(());
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
        let mut headers: Vec<Header> = letter.headers;
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
        self.outputs.push(Outgoing {
            topic,
            partition,
            key: letter.key,
            value: Some(payload),
            headers,
            timestamp_ms: now,
        });
        self.settles.push(Settle {
            dlq,
            id: letter.id,
            outcome: Status::Replayed,
        });
        Ok(())
    }
}

fn stable_partition(bytes: &[u8], partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1).unsigned_abs())) as i32
}
