//! Discarding dead letters: which records a discard settles, and settling
//! them as [`Status::Discarded`]. `dlq discard` and the server's
//! `POST /api/dlqs/{dlq}/discard` both call these, so they select alike.
//!
//! A discard chooses first and settles after, so that the caller can audit
//! exactly what it is about to settle (the server writes its audit entry in
//! between, and does nothing if it cannot). A record that another writer
//! settles between the two steps is counted as chosen but not settled
//! ([`crate::store::CommitReport::settled`]).

use crate::store::{DlqStore, Result, Selection, Status, can_settle};

/// Records settled per commit.
pub const SETTLE_CHUNK: usize = 1000;

/// The records a discard chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    /// Ids to settle, in scan order (or in the order given).
    pub ids: Vec<String>,
    /// Ids asked for that are absent, not in `selection` or already
    /// settled.
    pub not_found: Vec<String>,
}

/// Chooses at most `limit` records of `dlq` to discard: the `ids` given
/// that `selection` matches and that can still be discarded, or, without
/// ids, the records of `selection` in scan order. `selection.dlq` is set to
/// `dlq`.
pub fn choose<S: DlqStore>(
    store: &S,
    dlq: &str,
    ids: &[String],
    selection: &Selection,
    limit: u64,
) -> Result<Chosen> {
    let mut selection = selection.clone();
    selection.dlq = Some(dlq.to_owned());
    let mut chosen = Chosen::default();
    let room = |c: &Chosen| (c.ids.len() as u64) < limit;
    if ids.is_empty() {
        for r in store.scan_all(&selection, SETTLE_CHUNK) {
            if !room(&chosen) {
                break;
            }
            let r = r?;
            // A selection may name statuses a discard cannot leave
            // (replayed, discarded, archived): those records are not chosen.
            if can_settle(r.status, Status::Discarded) {
                chosen.ids.push(r.letter.id);
            }
        }
    } else {
        for id in ids {
            match store.get(dlq, id)? {
                Some(r) if selection.matches(&r) && can_settle(r.status, Status::Discarded) => {
                    if room(&chosen) {
                        chosen.ids.push(id.clone());
                    }
                }
                _ => chosen.not_found.push(id.clone()),
            }
        }
    }
    Ok(chosen)
}

/// Settles `ids` of `dlq` as discarded, [`SETTLE_CHUNK`] per commit.
/// Returns how many were settled (records settled meanwhile by someone else
/// are not).
pub fn settle<S: DlqStore>(store: &mut S, dlq: &str, ids: &[String]) -> Result<usize> {
    let mut settled = 0;
    for chunk in ids.chunks(SETTLE_CHUNK) {
        settled += store.settle(dlq, chunk, Status::Discarded)?.settled;
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::Entry;
    use crate::{DeadLetter, Failure};

    fn store_with(n: usize) -> MemoryStore {
        let mut s = MemoryStore::new();
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let f = Failure::permanent("validate", "x.y", format!("bad {i}"));
                Entry {
                    dlq: "dlq.t".to_owned(),
                    letter: DeadLetter::new(format!("r{i}"), b"{}".to_vec(), &f),
                    status: Status::Pending,
                }
            })
            .collect();
        s.append(&entries).expect("append");
        s
    }

    #[test]
    fn choosing_changes_nothing_and_respects_the_limit() {
        let s = store_with(5);
        let c = choose(&s, "dlq.t", &[], &Selection::default(), 3).expect("choose");
        assert_eq!(c.ids, ["r0", "r1", "r2"]);
        assert_eq!(s.stats().expect("stats")[0].pending, 5);
    }

    #[test]
    fn settled_or_unknown_ids_are_not_found_and_only_the_chosen_settle() {
        let mut s = store_with(4);
        assert_eq!(settle(&mut s, "dlq.t", &["r1".into()]).expect("settle"), 1);
        let ids: Vec<String> = ["r0", "r1", "nope"].map(String::from).to_vec();
        let c = choose(&s, "dlq.t", &ids, &Selection::default(), 10).expect("choose");
        assert_eq!(c.ids, ["r0"]);
        assert_eq!(c.not_found, ["r1", "nope"]);
        assert_eq!(settle(&mut s, "dlq.t", &c.ids).expect("settle"), 1);
        let st = &s.stats().expect("stats")[0];
        assert_eq!((st.pending, st.discarded), (2, 2));
    }
}
