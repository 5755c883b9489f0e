//! Settlement state in segments: what has become of the records of a DLQ
//! partition, by offset, in a size that does not grow with the records.
//!
//! A Kafka DLQ topic is an immutable log; "this record was replayed" is
//! written to the ledger. Instead of one ledger entry per record, each DLQ
//! partition is cut into segments of [`SEGMENT_OFFSETS`] offsets, and the
//! ledger holds one value per segment with the [`Mark`] of each offset:
//! settled (replayed, discarded, parked, archived), not a record at all (a
//! transaction marker, an aborted record, a later copy of a record), or
//! nothing known (pending, when it is a record). Offsets are marked in runs,
//! so a segment that replays settled in order is a few bytes; the worst
//! pattern (marks alternating offset by offset) is a 3-bit-per-offset
//! bitmap, 24 KiB. The whole state of 10M records is a few MB at most, read
//! once when a store opens and followed incrementally.
//!
//! This module is the state and its codec; the store decides what to mark
//! (see docs/store-contract.md, "The Kafka store at scale").

use dlq_core::store::Status;
use std::collections::{BTreeMap, BTreeSet};

/// Offsets per segment.
pub const SEGMENT_OFFSETS: i64 = 65_536;

/// [`SEGMENT_OFFSETS`] as an index into a segment.
const SEGMENT_LEN: u32 = SEGMENT_OFFSETS as u32;

/// What the settlement state says of one offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mark {
    /// Nothing known: a record there is pending.
    Unmarked = 0,
    /// Its record was replayed.
    Replayed = 1,
    /// Its record was discarded.
    Discarded = 2,
    /// Its record was parked.
    Parked = 3,
    /// Not a record to count: a transaction marker, an aborted record, or a
    /// later copy of a record already in the DLQ.
    Gap = 4,
    /// Its record was moved to an archive store (`dlq archive`). After
    /// `Gap` because the codes are stored: 5 fits the 3-bit bitmap and a
    /// run's mark byte, and segments written before it read as they were.
    Archived = 5,
}

impl Mark {
    /// Every mark, by its number.
    pub const ALL: [Mark; 6] = [
        Mark::Unmarked,
        Mark::Replayed,
        Mark::Discarded,
        Mark::Parked,
        Mark::Gap,
        Mark::Archived,
    ];

    fn from_u8(n: u8) -> Option<Mark> {
        Mark::ALL.get(usize::from(n)).copied()
    }

    /// The mark of a settlement.
    pub fn settled(status: Status) -> Mark {
        match status {
            Status::Pending => Mark::Unmarked,
            Status::Replayed => Mark::Replayed,
            Status::Discarded => Mark::Discarded,
            Status::Parked => Mark::Parked,
            Status::Archived => Mark::Archived,
        }
    }

    /// The status of a record at an offset with this mark; `None` for a gap.
    pub fn status(self) -> Option<Status> {
        match self {
            Mark::Unmarked => Some(Status::Pending),
            Mark::Replayed => Some(Status::Replayed),
            Mark::Discarded => Some(Status::Discarded),
            Mark::Parked => Some(Status::Parked),
            Mark::Archived => Some(Status::Archived),
            Mark::Gap => None,
        }
    }
}

/// Counts of offsets by mark, indexed by `Mark as usize`.
pub type MarkCounts = [u64; Mark::ALL.len()];

/// A segment value that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid settlement segment: {0}")]
pub struct SegmentError(&'static str);

/// Format bytes of an encoded segment.
const RUNS: u8 = 1;
const PACKED: u8 = 2;

/// The marks of one segment's offsets, as runs of equal marks covering the
/// whole segment: `(end, mark)` with increasing ends, the last one
/// [`SEGMENT_OFFSETS`], and no two neighbours with the same mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    runs: Vec<(u32, Mark)>,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            runs: vec![(SEGMENT_LEN, Mark::Unmarked)],
        }
    }
}

/// Appends a run to `runs`, merging it with the last one when equal.
fn push_run(runs: &mut Vec<(u32, Mark)>, end: u32, mark: Mark) {
    let start = runs.last().map_or(0, |r| r.0);
    if end <= start {
        return;
    }
    match runs.last_mut() {
        Some(last) if last.1 == mark => last.0 = end,
        _ => runs.push((end, mark)),
    }
}

impl Segment {
    /// The mark of the offset at `index` in the segment.
    pub fn get(&self, index: u32) -> Mark {
        let i = self.runs.partition_point(|r| r.0 <= index);
        self.runs.get(i).map_or(Mark::Unmarked, |r| r.1)
    }

    /// Whether no offset is marked.
    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(|r| r.1 == Mark::Unmarked)
    }

    /// The runs as `(start, end, mark)`.
    pub fn runs(&self) -> impl Iterator<Item = (u32, u32, Mark)> + '_ {
        let mut start = 0;
        self.runs.iter().map(move |&(end, mark)| {
            let run = (start, end, mark);
            start = end;
            run
        })
    }

    /// Marks ranges `(start, end, mark)` of the segment (sorted, not
    /// overlapping), in one pass over the runs.
    pub fn overlay(&mut self, ranges: &[(u32, u32, Mark)]) {
        let old = std::mem::take(&mut self.runs);
        let mut out: Vec<(u32, Mark)> = Vec::with_capacity(old.len() + 2 * ranges.len());
        let mut next_old = 0;
        // Copies the old runs up to `to`; returns where it stopped.
        let copy_old = |out: &mut Vec<(u32, Mark)>, mut next: usize, to: u32| {
            while let Some(&(end, mark)) = old.get(next) {
                push_run(out, end.min(to), mark);
                if end > to {
                    break;
                }
                next += 1;
            }
            next
        };
        for &(start, end, mark) in ranges {
            let (start, end) = (start.min(SEGMENT_LEN), end.min(SEGMENT_LEN));
            if end <= start {
                continue;
            }
            next_old = copy_old(&mut out, next_old, start);
            push_run(&mut out, end, mark);
            // Skip the old runs the range covers.
            while old.get(next_old).is_some_and(|r| r.0 <= end) {
                next_old += 1;
            }
        }
        copy_old(&mut out, next_old, SEGMENT_LEN);
        self.runs = out;
    }

    /// Counts of offsets by mark in `[from, to)` of the segment.
    pub fn counts(&self, from: u32, to: u32) -> MarkCounts {
        let mut counts = [0; Mark::ALL.len()];
        for (start, end, mark) in self.runs() {
            let (s, e) = (start.max(from), end.min(to));
            if e > s {
                counts[mark as usize] += u64::from(e - s);
            }
        }
        counts
    }

    /// The first offset at or after `from` whose mark `wanted` accepts.
    pub fn first(&self, from: u32, wanted: impl Fn(Mark) -> bool) -> Option<u32> {
        self.runs()
            .find(|&(_, end, mark)| end > from && wanted(mark))
            .map(|(start, _, _)| start.max(from))
    }

    /// The segment's value in the ledger: runs when that is smaller, else
    /// 3 bits per offset.
    pub fn encode(&self) -> Vec<u8> {
        let mut runs = vec![RUNS];
        // Trailing unmarked offsets are implied.
        let mut last = self.runs.len();
        if self.runs.last().is_some_and(|r| r.1 == Mark::Unmarked) {
            last -= 1;
        }
        let mut start = 0;
        for &(end, mark) in &self.runs[..last] {
            write_varint(&mut runs, end - start);
            runs.push(mark as u8);
            start = end;
        }
        let packed_len = 1 + (SEGMENT_LEN as usize * 3).div_ceil(8);
        if runs.len() <= packed_len {
            return runs;
        }
        let mut packed = vec![0u8; packed_len];
        packed[0] = PACKED;
        for (start, end, mark) in self.runs() {
            for i in start..end {
                let bit = i as usize * 3;
                let value = (mark as u16) << (bit % 8);
                packed[1 + bit / 8] |= value as u8;
                if bit % 8 > 5 {
                    packed[2 + bit / 8] |= (value >> 8) as u8;
                }
            }
        }
        packed
    }

    /// Reads [`Segment::encode`] back.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] for an unknown format, a truncated value, runs past
    /// the segment's end or an unknown mark.
    pub fn decode(bytes: &[u8]) -> Result<Segment, SegmentError> {
        let (&format, body) = bytes.split_first().ok_or(SegmentError("empty"))?;
        let mut runs = Vec::new();
        match format {
            RUNS => {
                let mut rest = body;
                let mut end: u32 = 0;
                while !rest.is_empty() {
                    let (len, after) = read_varint(rest).ok_or(SegmentError("truncated run"))?;
                    let (&mark, after) = after.split_first().ok_or(SegmentError("no mark"))?;
                    let mark = Mark::from_u8(mark).ok_or(SegmentError("unknown mark"))?;
                    end = end
                        .checked_add(len)
                        .filter(|e| *e <= SEGMENT_LEN)
                        .ok_or(SegmentError("runs past the segment"))?;
                    push_run(&mut runs, end, mark);
                    rest = after;
                }
                push_run(&mut runs, SEGMENT_LEN, Mark::Unmarked);
            }
            PACKED => {
                if body.len() != (SEGMENT_LEN as usize * 3).div_ceil(8) {
                    return Err(SegmentError("packed value of the wrong size"));
                }
                for i in 0..SEGMENT_LEN {
                    let bit = i as usize * 3;
                    let lo = u16::from(body[bit / 8]);
                    let hi = body.get(bit / 8 + 1).map_or(0, |b| u16::from(*b));
                    let value = ((lo | (hi << 8)) >> (bit % 8)) & 0b111;
                    let mark = Mark::from_u8(value as u8).ok_or(SegmentError("unknown mark"))?;
                    push_run(&mut runs, i + 1, mark);
                }
            }
            _ => return Err(SegmentError("unknown format")),
        }
        Ok(Segment { runs })
    }
}

fn write_varint(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut n: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        n |= u32::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}

/// The settlement state of one DLQ partition: its segments, and which of
/// them changed since they were last written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMarks {
    segments: BTreeMap<i64, Segment>,
    dirty: BTreeSet<i64>,
}

/// The segment of an offset and the offset's index in it.
fn locate(offset: i64) -> (i64, u32) {
    (
        offset.div_euclid(SEGMENT_OFFSETS),
        offset.rem_euclid(SEGMENT_OFFSETS) as u32,
    )
}

impl PartitionMarks {
    /// The mark of `offset`.
    pub fn get(&self, offset: i64) -> Mark {
        let (segment, index) = locate(offset);
        self.segments
            .get(&segment)
            .map_or(Mark::Unmarked, |s| s.get(index))
    }

    /// Marks offsets (in any order; a later entry for the same offset wins).
    pub fn mark(&mut self, marks: &[(i64, Mark)]) {
        let mut sorted: Vec<(i64, Mark)> = marks.iter().copied().filter(|m| m.0 >= 0).collect();
        // Stable: for one offset, the last entry ends up last.
        sorted.sort_by_key(|m| m.0);
        let mut by_segment: BTreeMap<i64, Vec<(u32, u32, Mark)>> = BTreeMap::new();
        for (i, &(offset, mark)) in sorted.iter().enumerate() {
            if sorted.get(i + 1).is_some_and(|next| next.0 == offset) {
                continue;
            }
            let (segment, index) = locate(offset);
            let ranges = by_segment.entry(segment).or_default();
            match ranges.last_mut() {
                Some(r) if r.1 == index && r.2 == mark => r.1 = index + 1,
                _ => ranges.push((index, index + 1, mark)),
            }
        }
        for (segment, ranges) in by_segment {
            self.segments.entry(segment).or_default().overlay(&ranges);
            self.dirty.insert(segment);
        }
    }

    /// A segment, if any of its offsets was ever marked.
    pub fn segment(&self, segment: i64) -> Option<&Segment> {
        self.segments.get(&segment)
    }

    /// Forgets a segment (its ledger value was deleted).
    pub fn forget(&mut self, segment: i64) {
        self.segments.remove(&segment);
        self.dirty.remove(&segment);
    }

    /// Replaces a segment with its value read from the ledger.
    pub fn load(&mut self, segment: i64, value: &[u8]) -> Result<(), SegmentError> {
        let s = Segment::decode(value)?;
        self.segments.insert(segment, s);
        self.dirty.remove(&segment);
        Ok(())
    }

    /// Counts of offsets by mark in `[from, to)`.
    pub fn counts(&self, from: i64, to: i64) -> MarkCounts {
        let mut counts = [0; Mark::ALL.len()];
        if to <= from {
            return counts;
        }
        let (first, _) = locate(from);
        let (last, _) = locate(to - 1);
        let mut marked: u64 = 0;
        for (&segment, s) in self.segments.range(first..=last) {
            let base = segment * SEGMENT_OFFSETS;
            let lo = (from - base).clamp(0, SEGMENT_OFFSETS) as u32;
            let hi = (to - base).clamp(0, SEGMENT_OFFSETS) as u32;
            let c = s.counts(lo, hi);
            for (total, n) in counts.iter_mut().zip(c) {
                *total += n;
            }
            marked += u64::from(hi - lo);
        }
        // Offsets of segments never marked are unmarked.
        counts[Mark::Unmarked as usize] += (to - from) as u64 - marked;
        counts
    }

    /// The first offset in `[from, to)` whose mark `wanted` accepts.
    pub fn first(&self, from: i64, to: i64, wanted: impl Fn(Mark) -> bool) -> Option<i64> {
        let mut at = from.max(0);
        while at < to {
            let (segment, index) = locate(at);
            let base = segment * SEGMENT_OFFSETS;
            let found = match self.segments.get(&segment) {
                Some(s) => s.first(index, &wanted).map(|i| base + i64::from(i)),
                None => wanted(Mark::Unmarked).then_some(at),
            };
            if let Some(o) = found {
                return (o < to).then_some(o);
            }
            at = base + SEGMENT_OFFSETS;
        }
        None
    }

    /// Forgets segments wholly below `low` (their records were deleted by
    /// retention); returns them, to delete their ledger values.
    pub fn expire(&mut self, low: i64) -> Vec<i64> {
        let (first_kept, _) = locate(low.max(0));
        let gone: Vec<i64> = self.segments.range(..first_kept).map(|(k, _)| *k).collect();
        for k in &gone {
            self.segments.remove(k);
            self.dirty.remove(k);
        }
        gone
    }

    /// The changed segments' values, to write to the ledger; they count as
    /// written from now on.
    pub fn take_dirty(&mut self) -> Vec<(i64, Vec<u8>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|k| self.segments.get(&k).map(|s| (k, s.encode())))
            .collect()
    }

    /// Segments changed since [`PartitionMarks::take_dirty`], to write
    /// again after a failed write.
    pub fn mark_dirty(&mut self, segments: impl IntoIterator<Item = i64>) {
        self.dirty.extend(segments);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_counts(model: &[Mark], from: usize, to: usize) -> MarkCounts {
        let mut c = [0; Mark::ALL.len()];
        for m in &model[from..to] {
            c[*m as usize] += 1;
        }
        c
    }

    #[test]
    fn an_unmarked_partition_is_all_pending() {
        let p = PartitionMarks::default();
        assert_eq!(p.get(12), Mark::Unmarked);
        assert_eq!(p.counts(10, 20), [10, 0, 0, 0, 0, 0]);
        assert_eq!(p.first(5, 9, |m| m == Mark::Unmarked), Some(5));
        assert_eq!(p.first(5, 9, |m| m == Mark::Replayed), None);
    }

    #[test]
    fn marks_in_order_make_a_few_bytes() {
        let mut p = PartitionMarks::default();
        let marks: Vec<(i64, Mark)> = (0..50_000).map(|o| (o, Mark::Replayed)).collect();
        p.mark(&marks);
        let written = p.take_dirty();
        assert_eq!(written.len(), 1);
        assert!(written[0].1.len() < 8, "{} bytes", written[0].1.len());
        assert_eq!(p.counts(0, 60_000), [10_000, 50_000, 0, 0, 0, 0]);
        assert_eq!(p.first(0, 60_000, |m| m == Mark::Unmarked), Some(50_000));
        assert!(p.take_dirty().is_empty(), "written once");
    }

    #[test]
    fn the_worst_pattern_is_a_bitmap_of_24_kib() {
        let mut s = Segment::default();
        let ranges: Vec<(u32, u32, Mark)> = (0..SEGMENT_LEN)
            .map(|i| (i, i + 1, Mark::ALL[i as usize % Mark::ALL.len()]))
            .collect();
        s.overlay(&ranges);
        let bytes = s.encode();
        assert_eq!(bytes.len(), 1 + 24_576);
        assert_eq!(Segment::decode(&bytes), Ok(s));
    }

    #[test]
    fn marks_cross_segments_and_expire_with_retention() {
        let mut p = PartitionMarks::default();
        let edge = SEGMENT_OFFSETS;
        p.mark(&[
            (edge - 1, Mark::Discarded),
            (edge, Mark::Parked),
            (3 * edge + 2, Mark::Gap),
        ]);
        assert_eq!(p.counts(edge - 1, edge + 1), [0, 0, 1, 1, 0, 0]);
        assert_eq!(p.first(0, 4 * edge, |m| m == Mark::Gap), Some(3 * edge + 2));
        assert_eq!(p.take_dirty().len(), 3);
        assert_eq!(p.expire(2 * edge), vec![0, 1]);
        assert_eq!(p.get(edge), Mark::Unmarked);
        assert_eq!(p.get(3 * edge + 2), Mark::Gap);
    }

    #[test]
    fn an_archived_settlement_is_its_own_mark_in_runs_and_in_the_bitmap() {
        assert_eq!(Mark::settled(Status::Archived), Mark::Archived);
        assert_eq!(Mark::Archived.status(), Some(Status::Archived));
        for s in Status::ALL {
            assert_eq!(Mark::settled(s).status(), Some(s), "{s}");
        }
        // Runs: a few archived ranges among replayed ones.
        let mut p = PartitionMarks::default();
        p.mark(&[
            (10, Mark::Archived),
            (11, Mark::Replayed),
            (12, Mark::Archived),
        ]);
        let value = p.segment(0).expect("segment").encode();
        let mut reread = PartitionMarks::default();
        reread.load(0, &value).expect("decode runs");
        assert_eq!(reread.get(12), Mark::Archived);
        assert_eq!(reread.counts(0, 20)[Mark::Archived as usize], 2);
        // The bitmap: archived on every other offset of a whole segment.
        let ranges: Vec<(u32, u32, Mark)> = (0..SEGMENT_LEN)
            .map(|i| {
                let m = if i % 2 == 0 {
                    Mark::Archived
                } else {
                    Mark::Gap
                };
                (i, i + 1, m)
            })
            .collect();
        let mut seg = Segment::default();
        seg.overlay(&ranges);
        let packed = Segment::decode(&seg.encode()).expect("decode bitmap");
        assert_eq!(packed.get(SEGMENT_LEN - 2), Mark::Archived);
        assert_eq!(
            packed.counts(0, SEGMENT_LEN)[Mark::Archived as usize],
            u64::from(SEGMENT_LEN / 2)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[9],
            &[RUNS, 0x80],
            &[RUNS, 1],
            &[RUNS, 1, 7],
            &[RUNS, 0xff, 0xff, 0x04, 1],
            &[PACKED, 0, 0],
        ] {
            assert!(Segment::decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Against a plain array of marks: marking, reading, counting,
        /// finding and the codec agree, whatever the pattern.
        #[test]
        fn the_state_agrees_with_a_plain_array(
            batches in proptest::collection::vec(
                proptest::collection::vec((0i64..3 * SEGMENT_OFFSETS, 0u8..Mark::ALL.len() as u8, 1i64..40), 1..40),
                1..6,
            ),
            probes in proptest::collection::vec((0i64..3 * SEGMENT_OFFSETS, 0i64..3 * SEGMENT_OFFSETS), 8),
        ) {
            let size = (3 * SEGMENT_OFFSETS) as usize;
            let mut model = vec![Mark::Unmarked; size];
            let mut p = PartitionMarks::default();
            for batch in &batches {
                let mut marks = Vec::new();
                for &(start, mark, len) in batch {
                    for o in start..(start + len).min(3 * SEGMENT_OFFSETS) {
                        marks.push((o, Mark::ALL[mark as usize]));
                    }
                }
                for &(o, m) in &marks {
                    model[o as usize] = m;
                }
                p.mark(&marks);
            }
            for &(a, b) in &probes {
                let (from, to) = (a.min(b), a.max(b));
                prop_assert_eq!(p.counts(from, to), model_counts(&model, from as usize, to as usize));
                prop_assert_eq!(p.get(from), model[from as usize]);
                for wanted in Mark::ALL {
                    let expected = (from..to).find(|o| model[*o as usize] == wanted);
                    prop_assert_eq!(p.first(from, to, |m| m == wanted), expected);
                }
            }
            let mut reread = PartitionMarks::default();
            for (segment, value) in p.take_dirty() {
                reread.load(segment, &value).expect("decode");
            }
            for o in (0..size).step_by(97) {
                prop_assert_eq!(reread.get(o as i64), model[o]);
            }
            prop_assert_eq!(reread.counts(0, size as i64), model_counts(&model, 0, size));
        }
    }
}
