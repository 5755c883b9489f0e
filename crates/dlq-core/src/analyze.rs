//! Failure groups: what broke, where, since when, and whether a replay helps.
//!
//! A failure group is (DLQ, source topic, stage, error class, *template*),
//! where the template is the innermost cause of the error message
//! ([`mine::root_cause`], so a wrapper such as "Listener failed" does not
//! decide the group) with its variable parts masked ([`mine::Masker`]:
//! `field <QUOTED>: expected a number, got a string (<QUOTED>)`) and then
//! merged by the online template miner ([`mine::Miner`]): messages of one
//! (source topic, stage, error class) whose masked texts differ in a few
//! tokens (`EOF while parsing a string` / `a value`) join one template with
//! `<*>` where they differ.
//!
//! # The miner's state, and fingerprints
//!
//! A [`Grouper`] holds one miner per (DLQ, source topic, stage, error class).
//! Inside one error class the miner runs with Drain's own similarity rule
//! (`words_are_constants` off): the class has already told the kinds of
//! failure apart, so two messages of the same class that differ in a plain
//! word are variants of one failure, not two. (Class `unknown` is the
//! exception: seed and raw records have no class, so their miner keeps the
//! constant-word rule.) Its state is persisted in the
//! store as the checkpoint [`checkpoint_name`] (`analyze:miner:<dlq>`), so the
//! next analysis of a growing DLQ continues from the clusters it found
//! instead of starting over, and a record keeps its group across runs.
//!
//! A group's [`fingerprint`] is the first 16 hex digits of the SHA-256 of
//! (source topic, stage, error class, cluster id). The filter language
//! evaluates `fingerprint == "…"` per record against the persisted miners
//! ([`Grouper::fingerprint`], which matches without learning). A record no
//! persisted cluster matches yet (it arrived after the last analysis, or no
//! analysis ran) gets the *stateless* fingerprint of its masked template
//! ([`stateless_fingerprint`]), which the next `dlq analyze` may replace by its
//! cluster's: run `dlq analyze` before selecting by a fingerprint. Two
//! analyses that run at the same time each persist their own state; the last
//! one wins.
//!
//! # Triage
//!
//! Records that carry no verdict of their own (seed, raw, Kafka Connect and
//! Spring records: [`Triage::applies_to`]) are triaged by rules
//! ([`crate::triage`]): each gets the class and verdict of the first rule
//! its message matches. A group whose records all match rules of one verdict
//! gets that verdict and names the rule ([`Group::verdict_rule`]); records
//! of class `unknown` also get the rule's class. The triage does not change
//! fingerprints: they stay computed from the records' own class, so a
//! group's filter selects the same records whatever rules a command loaded.
//!
//! # What a group reports
//!
//! Counts, first and last seen, counts per hour, sample ids, keys and
//! partitions, a verdict with its reason, the `--filter` that selects the
//! group, and a *field diagnosis* of its JSON payloads ([`FieldFinding`]):
//! the top-level paths and one nested level (`a.b`) that are missing, of an
//! unexpected type or out of range in this group, compared with the
//! "majority shape" of the same DLQ and source topic. The majority is taken
//! over groups, not records (each group votes for its most frequent type and
//! range per path), so one large broken group does not become the norm; a
//! finding must also cover 20% of the group and exceed its share among the
//! other records by 20 points.
//!
//! [`Analyzer`] is streaming: records are added one at a time and memory is
//! bounded by the number of groups (per group: at most [`MAX_PATHS`] paths
//! of counters, [`MAX_DISTINCT_KEYS`] key hashes, one counter per hour and
//! partition), not by the number of records, unless the member ids are asked
//! for ([`Analyzer::with_members`]).

use crate::mine::{self, ClusterId, Masker, Miner, MinerConfig, MinerState};
use crate::store::StoredRecord;
use crate::triage::{Rule, Triage};
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

/// How many sample ids a group keeps.
pub const SAMPLE_IDS: usize = 5;
/// How many sample keys a group keeps.
pub const SAMPLE_KEYS: usize = 5;
/// How many distinct keys a group counts exactly; beyond, the count is a
/// lower bound.
pub const MAX_DISTINCT_KEYS: usize = 10_000;
/// How many payload paths a group keeps counters for; further paths are
/// ignored.
pub const MAX_PATHS: usize = 64;
/// A field is reported when its share in the group differs from the rest of
/// the DLQ by at least this much (and covers at least this share of the
/// group).
const FINDING_MIN_SHARE: f64 = 0.2;
/// Records of the same DLQ and topic outside a group needed to compare the
/// group with; with fewer, only nulls are reported.
const MIN_BASELINE: u64 = 5;
/// Share of in-range numbers in the rest of the DLQ above which a range is
/// taken as the field's expected range.
const RANGE_MAJORITY: f64 = 0.9;

/// Whether replaying a group can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every failure was retryable: a replay once the cause is gone should work.
    Transient,
    /// No failure was retryable: the records need a fix (or a discard).
    Permanent,
    /// The records are fine but the system is not (credentials,
    /// certificates, a missing topic or table, a size limit): fix the
    /// system, then replay as is.
    Configuration,
    /// The records were already applied (a duplicate key, an idempotency
    /// check): discard them.
    Duplicate,
    /// Mixed or unknown (e.g. foreign records no triage rule matches).
    Unknown,
}

impl Verdict {
    /// The name used in reports and rules (`transient`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Transient => "transient",
            Verdict::Permanent => "permanent",
            Verdict::Configuration => "configuration",
            Verdict::Duplicate => "duplicate",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One failure group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Stable id of the group: see [`fingerprint`].
    pub fingerprint: String,
    /// The DLQ holding the records.
    pub dlq: String,
    /// The topic the records came from.
    pub source_topic: Option<String>,
    /// The stage that failed.
    pub stage: String,
    /// The error class.
    pub error_class: String,
    /// The template of the group's messages: their root cause with every
    /// variable part as `<*>` (`field <*>: expected a number, got a string
    /// (<*>)`).
    pub template: String,
    /// The same template with the kind of each masked value (`<QUOTED>`,
    /// `<NUM>`, …; `<*>` where the miner found messages differing).
    pub typed_template: String,
    /// Records in the group.
    pub count: u64,
    /// When the earliest record first failed.
    pub first_seen: DateTime<Utc>,
    /// When the latest record last failed.
    pub last_seen: DateTime<Utc>,
    /// Records per hour of their last failure, oldest first.
    pub timeline: Vec<TimeBucket>,
    /// Whether a replay can help.
    pub verdict: Verdict,
    /// Why the verdict is what it is (naming the triage rule, if one gave it).
    pub verdict_reason: String,
    /// What gave the verdict: `record` (the records' own retryable flags),
    /// the name of the [`crate::triage`] rule that matched every record of
    /// the group (the most frequent one when several rules agree), `mixed`
    /// (the records' rules disagree) or `none` (no rule matched).
    pub verdict_rule: String,
    /// Whether the error class and verdict come from the triage rules
    /// because the records carry none (seed, raw, Connect and Spring
    /// records). The records' own class stays `unknown` for filters
    /// (`error_class == "unknown"`); select such a group by its fingerprint.
    pub triaged: bool,
    /// One error message of the group, as an example.
    pub example_error: String,
    /// A few record ids, for `dlq inspect`.
    pub sample_ids: Vec<String>,
    /// The record keys involved.
    pub keys: KeySummary,
    /// Records per source partition (records without one are not counted).
    pub partitions: BTreeMap<i32, u64>,
    /// How many payloads were JSON objects (the ones [`Group::fields`]
    /// describes) and how many were not.
    pub payloads: PayloadSummary,
    /// Payload fields that set this group apart, largest share first.
    pub fields: Vec<FieldFinding>,
    /// The `--filter` that selects exactly this group.
    pub replay_filter: String,
    /// Every record id of the group, when asked for
    /// ([`Analyzer::with_members`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
}

/// Records of a group in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeBucket {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// Records whose last failure is in this hour.
    pub count: u64,
}

/// The record keys of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeySummary {
    /// Distinct keys (a lower bound when `capped`).
    pub distinct: u64,
    /// Whether more than [`MAX_DISTINCT_KEYS`] keys were seen.
    pub capped: bool,
    /// Records without a key.
    pub without_key: u64,
    /// A few keys, as text (lossy UTF-8).
    pub samples: Vec<String>,
}

/// What the payloads of a group were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PayloadSummary {
    /// Payloads that parsed as a JSON object.
    pub json_objects: u64,
    /// Payloads that did not (not JSON, or JSON but not an object).
    pub other: u64,
}

/// What is wrong with a payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldIssue {
    /// The path is absent.
    Missing,
    /// The value has another JSON type than in the rest of the DLQ (`null`
    /// included).
    UnexpectedType,
    /// The value is a number outside the range the rest of the DLQ keeps to.
    OutOfRange,
}

/// A payload field that sets a group apart from the rest of its DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldFinding {
    /// The JSON path: `price`, or `a.b` one level down.
    pub path: String,
    /// What is wrong with it.
    pub issue: FieldIssue,
    /// Share of the group's JSON payloads with the issue, in percent.
    pub percent: f64,
    /// The same share among the other records of the DLQ and topic, in
    /// percent (`None` when there are too few to compare with).
    pub baseline_percent: Option<f64>,
    /// What the rest of the DLQ has: a JSON type (`number`) or a range
    /// (`[0, 1]`, `>= 0`).
    pub expected: Option<String>,
    /// What the group has: a JSON type (`string`) or `out of [0, 1]`.
    pub found: Option<String>,
    /// In words: "`price` is a string in 93% of the group (usually a number)".
    pub detail: String,
    /// The types of the path in the group, in percent of its JSON payloads
    /// (`missing` included).
    pub types: BTreeMap<&'static str, f64>,
}

/// The template of an error message: its root cause, masked.
pub fn template(error: &str) -> String {
    Masker::new().mask(mine::root_cause(error))
}

/// A typed template with every placeholder (`<NUM>`, `<QUOTED>`, …) as `<*>`.
fn untyped(typed: &str) -> String {
    mine::MaskKind::ALL
        .iter()
        .fold(typed.to_owned(), |t, k| t.replace(k.placeholder(), "<*>"))
}

/// The fingerprint of a record's masked template, without any miner state
/// (see the module docs: what a record gets before it is analyzed).
pub fn stateless_fingerprint(record: &StoredRecord) -> String {
    let l = &record.letter;
    fingerprint_of(
        l.source.topic.as_deref().unwrap_or(""),
        &l.stage,
        &l.error_class,
        &template(&l.error),
    )
}

/// The fingerprint of a record's failure group, as far as the given miners
/// know it: [`Grouper::fingerprint`] with `grouper`, else
/// [`stateless_fingerprint`].
pub fn fingerprint(record: &StoredRecord, grouper: Option<&Grouper>) -> String {
    match grouper {
        Some(g) => g.fingerprint(record),
        None => stateless_fingerprint(record),
    }
}

/// The fingerprint of (source topic, stage, error class, template).
pub fn fingerprint_of(
    source_topic: &str,
    stage: &str,
    error_class: &str,
    template: &str,
) -> String {
    let key = format!("{source_topic}\u{0}{stage}\u{0}{error_class}\u{0}{template}");
    crate::envelope::sha256_hex(key.as_bytes())[..16].to_owned()
}

/// The name of the checkpoint holding a DLQ's miners.
pub fn checkpoint_name(dlq: &str) -> String {
    format!("analyze:miner:{dlq}")
}

/// The version of [`Grouper::state`]'s JSON.
pub const GROUPER_STATE_VERSION: u32 = 1;

/// The miners of one DLQ, as persisted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DlqGrouperState {
    version: u32,
    /// Miners by [`miner_key`].
    miners: BTreeMap<String, MinerState>,
}

/// A persisted grouper state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GrouperError {
    /// The checkpoint is not valid JSON of the expected shape.
    #[error("the template miner state of DLQ {dlq} is not readable: {message}")]
    Unreadable {
        /// The DLQ.
        dlq: String,
        /// What is wrong.
        message: String,
    },
}

/// The template miners of failure groups, one per (DLQ, source topic, stage,
/// error class); see the module docs.
#[derive(Debug, Default, Clone)]
pub struct Grouper {
    /// Miners by DLQ, then by [`miner_key`].
    dlqs: BTreeMap<String, BTreeMap<String, Miner>>,
    /// DLQs whose miners learned something since they were restored.
    changed: std::collections::BTreeSet<String>,
}

/// The key of a record's miner inside its DLQ.
fn miner_key(topic: &str, stage: &str, error_class: &str) -> String {
    format!("{topic}\u{0}{stage}\u{0}{error_class}")
}

/// The configuration of a new miner of an error class. Records of class
/// `unknown` (seed, raw) have no class to tell kinds of failure apart, so
/// their miner keeps the constant-word rule: "Connection refused" and
/// "Connection reset" are two groups, each with one triage verdict, not one
/// `Connection <*>` group of mixed verdicts. (A persisted miner keeps the
/// configuration it was created with.)
fn group_miner_config(error_class: &str) -> MinerConfig {
    MinerConfig {
        words_are_constants: error_class == crate::envelope::UNKNOWN_ERROR_CLASS,
        ..MinerConfig::new()
    }
}

impl Grouper {
    /// A grouper that knows no template yet.
    pub fn new() -> Self {
        Grouper::default()
    }

    /// Restores a DLQ's miners from the JSON of [`Grouper::state`] (the
    /// checkpoint [`checkpoint_name`]).
    pub fn restore(&mut self, dlq: &str, state: &str) -> Result<(), GrouperError> {
        let unreadable = |message: String| GrouperError::Unreadable {
            dlq: dlq.to_owned(),
            message,
        };
        let parsed: DlqGrouperState =
            serde_json::from_str(state).map_err(|e| unreadable(e.to_string()))?;
        if parsed.version != GROUPER_STATE_VERSION {
            return Err(unreadable(format!(
                "version {} (this build reads {GROUPER_STATE_VERSION})",
                parsed.version
            )));
        }
        let mut miners = BTreeMap::new();
        for (key, state) in parsed.miners {
            let miner = Miner::from_state(state).map_err(|e| unreadable(e.to_string()))?;
            miners.insert(key, miner);
        }
        self.dlqs.insert(dlq.to_owned(), miners);
        self.changed.remove(dlq);
        Ok(())
    }

    /// The JSON to persist for a DLQ's miners, if it has any.
    pub fn state(&self, dlq: &str) -> Option<String> {
        let miners = self.dlqs.get(dlq)?;
        let state = DlqGrouperState {
            version: GROUPER_STATE_VERSION,
            miners: miners
                .iter()
                .map(|(k, m)| (k.clone(), m.to_state()))
                .collect(),
        };
        serde_json::to_string(&state).ok()
    }

    /// The DLQs whose miners learned something since they were restored
    /// (the states worth persisting).
    pub fn changed(&self) -> Vec<String> {
        self.changed.iter().cloned().collect()
    }

    /// Mines a record's message: it joins the most similar template of its
    /// (DLQ, topic, stage, class) or starts a new one. Returns the group's
    /// fingerprint and the cluster.
    pub fn add(&mut self, record: &StoredRecord) -> (String, ClusterId) {
        let l = &record.letter;
        let topic = l.source.topic.as_deref().unwrap_or("");
        let key = miner_key(topic, &l.stage, &l.error_class);
        let miners = self.dlqs.entry(record.dlq.clone()).or_default();
        let miner = miners.entry(key).or_insert_with(|| {
            Miner::with_config(group_miner_config(&l.error_class)).unwrap_or_default()
        });
        let id = miner.add(&l.error);
        if !self.changed.contains(&record.dlq) {
            self.changed.insert(record.dlq.clone());
        }
        (cluster_fingerprint(topic, &l.stage, &l.error_class, id), id)
    }

    /// The fingerprint of a record's group without learning anything: the
    /// cluster its message matches in the persisted miners, else
    /// [`stateless_fingerprint`].
    pub fn fingerprint(&self, record: &StoredRecord) -> String {
        let l = &record.letter;
        let topic = l.source.topic.as_deref().unwrap_or("");
        self.dlqs
            .get(&record.dlq)
            .and_then(|m| m.get(&miner_key(topic, &l.stage, &l.error_class)))
            .and_then(|m| m.match_only(&l.error))
            .map_or_else(
                || stateless_fingerprint(record),
                |id| cluster_fingerprint(topic, &l.stage, &l.error_class, id),
            )
    }

    /// The template of a cluster of a record's miner, placeholders typed
    /// (`<NUM>`, `<QUOTED>`) and `<*>` where messages differed.
    pub fn template(&self, record: &StoredRecord, id: ClusterId) -> Option<String> {
        let l = &record.letter;
        let topic = l.source.topic.as_deref().unwrap_or("");
        self.template_of(&record.dlq, topic, &l.stage, &l.error_class, id)
    }

    fn template_of(
        &self,
        dlq: &str,
        topic: &str,
        stage: &str,
        error_class: &str,
        id: ClusterId,
    ) -> Option<String> {
        self.templates_of(dlq, topic, stage, error_class, id)
            .map(|(_, typed)| typed)
    }

    /// (`<*>` template, typed template) of a cluster.
    fn templates_of(
        &self,
        dlq: &str,
        topic: &str,
        stage: &str,
        error_class: &str,
        id: ClusterId,
    ) -> Option<(String, String)> {
        let miner = self
            .dlqs
            .get(dlq)?
            .get(&miner_key(topic, stage, error_class))?;
        Some((miner.template(id)?, miner.typed_template(id)?))
    }
}

/// Restores the persisted miners of every DLQ of `store` (checkpoints
/// [`checkpoint_name`]). A state that cannot be read is left out (its DLQ's
/// groups start over) and returned beside the grouper, for the caller to
/// report.
pub fn load_grouper<S: crate::store::DlqStore + ?Sized>(
    store: &S,
) -> crate::store::Result<(Grouper, Vec<GrouperError>)> {
    let mut grouper = Grouper::new();
    let mut unreadable = Vec::new();
    for dlq in store.dlqs()? {
        if let Some(state) = store.checkpoint(&checkpoint_name(&dlq))?
            && let Err(e) = grouper.restore(&dlq, &state)
        {
            unreadable.push(e);
        }
    }
    Ok((grouper, unreadable))
}

/// Saves the miners of the DLQs that learned something
/// ([`Grouper::changed`]) as their checkpoints, one commit per DLQ.
pub fn save_grouper<S: crate::store::DlqStore + ?Sized>(
    store: &mut S,
    grouper: &Grouper,
) -> crate::store::Result<()> {
    for dlq in grouper.changed() {
        if let Some(state) = grouper.state(&dlq) {
            let name = checkpoint_name(&dlq);
            store.commit(crate::store::Batch {
                checkpoint: Some((&name, &state)),
                ..crate::store::Batch::default()
            })?;
        }
    }
    Ok(())
}

fn cluster_fingerprint(topic: &str, stage: &str, error_class: &str, id: ClusterId) -> String {
    fingerprint_of(topic, stage, error_class, &format!("\u{0}cluster {}", id.0))
}

const TYPES: [&str; 6] = ["null", "boolean", "number", "string", "array", "object"];

fn type_index(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Counters for one payload path.
#[derive(Debug, Clone, Copy, Default)]
struct PathStats {
    present: u64,
    types: [u64; 6],
    /// Numbers in [0, 1].
    unit: u64,
    /// Negative numbers.
    negative: u64,
}

impl PathStats {
    fn add(&mut self, v: &Value) {
        self.present += 1;
        self.types[type_index(v)] += 1;
        if let Some(x) = v.as_f64() {
            if (0.0..=1.0).contains(&x) {
                self.unit += 1;
            }
            if x < 0.0 {
                self.negative += 1;
            }
        }
    }

    fn plus(mut self, o: &PathStats) -> PathStats {
        self.present += o.present;
        for (a, b) in self.types.iter_mut().zip(o.types) {
            *a += b;
        }
        self.unit += o.unit;
        self.negative += o.negative;
        self
    }

    fn minus(mut self, o: &PathStats) -> PathStats {
        self.present -= o.present;
        for (a, b) in self.types.iter_mut().zip(o.types) {
            *a -= b;
        }
        self.unit -= o.unit;
        self.negative -= o.negative;
        self
    }

    fn numbers(&self) -> u64 {
        self.types[2]
    }
}

/// The shape of the JSON payloads of a set of records, as counters.
#[derive(Debug, Clone, Default)]
struct Shape {
    payloads: PayloadSummary,
    paths: BTreeMap<String, PathStats>,
}

impl Shape {
    fn add(&mut self, payload: &[u8]) {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
            self.payloads.other += 1;
            return;
        };
        self.payloads.json_objects += 1;
        for (k, v) in &map {
            self.add_path(k, v);
            if let Value::Object(inner) = v {
                for (k2, v2) in inner {
                    self.add_path(&format!("{k}.{k2}"), v2);
                }
            }
        }
    }

    fn add_path(&mut self, path: &str, v: &Value) {
        if let Some(s) = self.paths.get_mut(path) {
            s.add(v);
        } else if self.paths.len() < MAX_PATHS {
            let mut s = PathStats::default();
            s.add(v);
            self.paths.insert(path.to_owned(), s);
        }
    }

    fn plus(&mut self, o: &Shape) {
        self.payloads.json_objects += o.payloads.json_objects;
        self.payloads.other += o.payloads.other;
        for (p, s) in &o.paths {
            let e = self.paths.entry(p.clone()).or_default();
            *e = e.plus(s);
        }
    }

    /// `self` without `o`, which was added to it.
    fn minus(&self, o: &Shape) -> Shape {
        let mut out = self.clone();
        out.payloads.json_objects -= o.payloads.json_objects;
        out.payloads.other -= o.payloads.other;
        for (p, s) in &o.paths {
            if let Some(e) = out.paths.get_mut(p) {
                *e = e.minus(s);
            }
        }
        out
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn a_type(t: &str) -> String {
    match t {
        "array" => "an array".to_owned(),
        "object" => "an object".to_owned(),
        "null" => "null".to_owned(),
        t => format!("a {t}"),
    }
}

/// The majority shape of a DLQ and topic: for each path, what most of its
/// groups have. Groups vote rather than records, so one large broken group
/// does not make its breakage the norm.
#[derive(Debug, Default)]
struct Norm {
    /// Groups with JSON payloads that voted.
    groups: u64,
    paths: BTreeMap<String, PathNorm>,
}

#[derive(Debug, Default)]
struct PathNorm {
    /// Groups where the path is present in most records.
    present_votes: u64,
    /// Groups voting for each type (their most frequent one).
    type_votes: [u64; 6],
    /// Groups with numbers at the path, mostly in [0, 1], mostly >= 0.
    numeric: u64,
    unit: u64,
    non_negative: u64,
}

impl Norm {
    fn vote(&mut self, shape: &Shape) {
        let n = shape.payloads.json_objects;
        if n == 0 {
            return;
        }
        self.groups += 1;
        for (path, s) in &shape.paths {
            let v = self.paths.entry(path.clone()).or_default();
            if s.present * 2 >= n {
                v.present_votes += 1;
            }
            if s.present > 0 {
                let t = (0..TYPES.len())
                    .max_by_key(|&i| (s.types[i], std::cmp::Reverse(i)))
                    .unwrap_or(0);
                v.type_votes[t] += 1;
            }
            if s.numbers() > 0 {
                v.numeric += 1;
                v.unit += u64::from(share(s.unit, s.numbers()) >= RANGE_MAJORITY);
                v.non_negative +=
                    u64::from(share(s.numbers() - s.negative, s.numbers()) >= RANGE_MAJORITY);
            }
        }
    }

    /// Whether most groups have the path.
    fn expects_present(&self, path: &str) -> bool {
        self.paths
            .get(path)
            .is_some_and(|v| v.present_votes * 2 > self.groups)
    }

    /// The type most groups have at the path.
    fn expected_type(&self, path: &str) -> Option<usize> {
        let v = self.paths.get(path)?;
        (0..TYPES.len())
            .filter(|&i| v.type_votes[i] > 0)
            .max_by_key(|&i| (v.type_votes[i], std::cmp::Reverse(i)))
    }

    /// The range most groups with numbers at the path keep to.
    fn expected_range(&self, path: &str) -> Option<&'static str> {
        let v = self.paths.get(path)?;
        if v.unit * 2 > v.numeric {
            Some("[0, 1]")
        } else if v.non_negative * 2 > v.numeric {
            Some(">= 0")
        } else {
            None
        }
    }
}

/// The fields of `group` that differ from `norm`, with shares compared to `rest` (the other records of the
/// same DLQ and topic).
fn diagnose(group: &Shape, rest: &Shape, norm: &Norm) -> Vec<FieldFinding> {
    let n = group.payloads.json_objects;
    if n == 0 {
        return Vec::new();
    }
    let m = rest.payloads.json_objects;
    let compare = m >= MIN_BASELINE && norm.groups >= 2;
    let empty = PathStats::default();
    let mut paths: Vec<&String> = group.paths.keys().collect();
    if compare {
        paths.extend(rest.paths.keys().filter(|p| !group.paths.contains_key(*p)));
    }
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let g = group.paths.get(path).unwrap_or(&empty);
        let o = rest.paths.get(path).unwrap_or(&empty);
        let mut types: BTreeMap<&'static str, f64> = TYPES
            .iter()
            .zip(g.types)
            .filter(|(_, c)| *c > 0)
            .map(|(t, c)| (*t, pct(c, n)))
            .collect();
        if g.present < n {
            types.insert("missing", pct(n - g.present, n));
        }
        let mut finding = |issue,
                           part: u64,
                           base: Option<u64>,
                           expected: Option<String>,
                           found: Option<String>,
                           detail: String| {
            out.push(FieldFinding {
                path: path.clone(),
                issue,
                percent: pct(part, n),
                baseline_percent: base.map(|b| pct(b, m)),
                expected,
                found,
                detail,
                types: types.clone(),
            });
        };
        let stands_out = |part: u64, base: u64| {
            let s = share(part, n);
            s >= FINDING_MIN_SHARE && (!compare || s - share(base, m) >= FINDING_MIN_SHARE)
        };
        if !compare {
            // Nothing to compare with: only nulls say something alone.
            if stands_out(g.types[0], 0) {
                finding(
                    FieldIssue::UnexpectedType,
                    g.types[0],
                    None,
                    None,
                    Some("null".to_owned()),
                    format!("`{path}` is null in {}% of the group", pct(g.types[0], n)),
                );
            }
            continue;
        }
        if norm.expects_present(path) && stands_out(n - g.present, m - o.present) {
            finding(
                FieldIssue::Missing,
                n - g.present,
                Some(m - o.present),
                None,
                None,
                format!(
                    "`{path}` is missing in {}% of the group ({}% elsewhere)",
                    pct(n - g.present, n),
                    pct(m - o.present, m)
                ),
            );
        }
        let Some(usual) = norm.expected_type(path) else {
            continue;
        };
        for (i, t) in TYPES.iter().enumerate() {
            if i != usual && stands_out(g.types[i], o.types[i]) {
                finding(
                    FieldIssue::UnexpectedType,
                    g.types[i],
                    Some(o.types[i]),
                    Some(TYPES[usual].to_owned()),
                    Some((*t).to_owned()),
                    format!(
                        "`{path}` is {} in {}% of the group (usually {})",
                        a_type(t),
                        pct(g.types[i], n),
                        a_type(TYPES[usual])
                    ),
                );
            }
        }
        let Some(range) = norm.expected_range(path) else {
            continue;
        };
        let (g_out, o_out) = if range == "[0, 1]" {
            (g.numbers() - g.unit, o.numbers() - o.unit)
        } else {
            (g.negative, o.negative)
        };
        if stands_out(g_out, o_out) {
            finding(
                FieldIssue::OutOfRange,
                g_out,
                Some(o_out),
                Some(range.to_owned()),
                Some(format!("out of {range}")),
                format!(
                    "`{path}` is a number out of {range} in {}% of the group (usually {range})",
                    pct(g_out, n)
                ),
            );
        }
    }
    out.sort_by(|a, b| b.percent.total_cmp(&a.percent).then(a.path.cmp(&b.path)));
    out
}

#[derive(Debug)]
struct Acc {
    group: Group,
    cluster: ClusterId,
    retryable: u64,
    /// Records that carry their own verdict (not triaged).
    own: u64,
    /// Triaged records by the index of the rule that matched (`None`: no
    /// rule did).
    rules: BTreeMap<Option<usize>, u64>,
    shape: Shape,
    timeline: BTreeMap<DateTime<Utc>, u64>,
    key_hashes: HashSet<u64>,
}

/// Builds failure groups incrementally from a scan.
#[derive(Debug, Default)]
pub struct Analyzer {
    groups: BTreeMap<(String, String), Acc>,
    members: bool,
    grouper: Grouper,
    /// The triage rules; `None`: the shipped ones ([`Triage::builtin`]).
    triage: Option<Arc<Triage>>,
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

fn key_hash(key: &[u8]) -> u64 {
    // Within one run only: the set just counts distinct keys.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Analyzer {
    /// An empty analyzer.
    pub fn new() -> Self {
        Analyzer::default()
    }

    /// An empty analyzer that lists every record id of each group in
    /// [`Group::members`] (memory then grows with the records).
    pub fn with_members() -> Self {
        Analyzer {
            members: true,
            ..Analyzer::default()
        }
    }

    /// Continues from persisted miners (see [`Grouper::restore`]) instead of
    /// learning templates from scratch.
    pub fn with_grouper(mut self, grouper: Grouper) -> Self {
        self.grouper = grouper;
        self
    }

    /// Triages records that carry no verdict with `triage` instead of the
    /// shipped rules (e.g. with the `[[triage.rule]]`s of `dlq.toml`).
    pub fn with_triage(mut self, triage: Arc<Triage>) -> Self {
        self.triage = Some(triage);
        self
    }

    /// Adds one record.
    pub fn add(&mut self, record: &StoredRecord) {
        let l = &record.letter;
        let (fp, cluster) = self.grouper.add(record);
        let members = self.members;
        let triage = Triage::applies_to(l).then(|| {
            self.triage
                .get_or_insert_with(Triage::builtin)
                .letter(l)
                .map(|t| t.index)
        });
        let acc = self
            .groups
            .entry((record.dlq.clone(), fp.clone()))
            .or_insert_with(|| Acc {
                group: Group {
                    replay_filter: format!("fingerprint == \"{fp}\""),
                    fingerprint: fp,
                    dlq: record.dlq.clone(),
                    source_topic: l.source.topic.clone(),
                    stage: l.stage.clone(),
                    error_class: l.error_class.clone(),
                    // Set by `finish`: the cluster's template may still widen.
                    template: String::new(),
                    typed_template: String::new(),
                    count: 0,
                    first_seen: l.first_failed_at,
                    last_seen: l.failed_at,
                    timeline: Vec::new(),
                    verdict: Verdict::Unknown,
                    verdict_reason: String::new(),
                    verdict_rule: String::new(),
                    triaged: false,
                    example_error: l.error.clone(),
                    sample_ids: Vec::new(),
                    keys: KeySummary::default(),
                    partitions: BTreeMap::new(),
                    payloads: PayloadSummary::default(),
                    fields: Vec::new(),
                    members: members.then(Vec::new),
                },
                cluster,
                retryable: 0,
                own: 0,
                rules: BTreeMap::new(),
                shape: Shape::default(),
                timeline: BTreeMap::new(),
                key_hashes: HashSet::new(),
            });
        let g = &mut acc.group;
        g.count += 1;
        g.first_seen = g.first_seen.min(l.first_failed_at);
        g.last_seen = g.last_seen.max(l.failed_at);
        *acc.timeline.entry(hour_of(l.failed_at)).or_default() += 1;
        if g.sample_ids.len() < SAMPLE_IDS {
            g.sample_ids.push(l.id.clone());
        }
        if let Some(m) = &mut g.members {
            m.push(l.id.clone());
        }
        if l.retryable {
            acc.retryable += 1;
        }
        match triage {
            None => acc.own += 1,
            Some(rule) => *acc.rules.entry(rule).or_default() += 1,
        }
        if let Some(p) = l.source.partition {
            *g.partitions.entry(p).or_default() += 1;
        }
        match &l.key {
            None => g.keys.without_key += 1,
            Some(k) => {
                if acc.key_hashes.len() < MAX_DISTINCT_KEYS {
                    if acc.key_hashes.insert(key_hash(k)) && g.keys.samples.len() < SAMPLE_KEYS {
                        g.keys.samples.push(String::from_utf8_lossy(k).into_owned());
                    }
                } else if !acc.key_hashes.contains(&key_hash(k)) {
                    g.keys.capped = true;
                }
            }
        }
        acc.shape.add(&l.payload);
    }

    /// The groups, largest first.
    pub fn finish(self) -> Vec<Group> {
        self.finish_with_grouper().0
    }

    /// The groups, largest first, and the miners that found them (to
    /// persist: [`Grouper::changed`], [`Grouper::state`]).
    pub fn finish_with_grouper(self) -> (Vec<Group>, Grouper) {
        let grouper = self.grouper;
        let triage = self.triage.unwrap_or_else(Triage::builtin);
        // The shape of each (DLQ, topic), to compare its groups with.
        let mut totals: BTreeMap<(String, Option<String>), (Shape, Norm)> = BTreeMap::new();
        for acc in self.groups.values() {
            let (shape, norm) = totals
                .entry((acc.group.dlq.clone(), acc.group.source_topic.clone()))
                .or_default();
            shape.plus(&acc.shape);
            norm.vote(&acc.shape);
        }
        let mut out: Vec<Group> = self
            .groups
            .into_values()
            .map(|mut acc| {
                let g = &mut acc.group;
                let (template, typed) = grouper
                    .templates_of(
                        &g.dlq,
                        g.source_topic.as_deref().unwrap_or(""),
                        &g.stage,
                        &g.error_class,
                        acc.cluster,
                    )
                    .unwrap_or_else(|| {
                        // The cluster was evicted (LRU) during this run.
                        let typed = template(&g.example_error);
                        (untyped(&typed), typed)
                    });
                g.template = template;
                g.typed_template = typed;
                let (verdict, reason, rule) = if acc.rules.is_empty() {
                    let (v, r) = verdict(&g.error_class, acc.retryable, g.count);
                    (v, r, "record".to_owned())
                } else {
                    let rules = acc
                        .rules
                        .iter()
                        .map(|(i, n)| (*n, i.and_then(|i| triage.rules().get(i))))
                        .collect::<Vec<_>>();
                    triaged_verdict(g, acc.own, &rules)
                };
                g.verdict = verdict;
                g.verdict_reason = reason;
                g.verdict_rule = rule;
                g.keys.distinct = acc.key_hashes.len() as u64;
                g.timeline = acc
                    .timeline
                    .into_iter()
                    .map(|(hour, count)| TimeBucket { hour, count })
                    .collect();
                g.payloads = acc.shape.payloads;
                let (total, norm) = &totals[&(g.dlq.clone(), g.source_topic.clone())];
                g.fields = diagnose(&acc.shape, &total.minus(&acc.shape), norm);
                acc.group
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        (out, grouper)
    }
}

/// The verdict of a group with triaged records, and its class when the
/// records carry none: what the rule of every record says, if they agree.
fn triaged_verdict(
    g: &mut Group,
    own: u64,
    rules: &[(u64, Option<&Rule>)],
) -> (Verdict, String, String) {
    let matched: Vec<(u64, &Rule)> = rules
        .iter()
        .filter_map(|(n, r)| r.map(|r| (*n, r)))
        .collect();
    let unmatched: u64 = rules
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n)
        .sum();
    let list = |with_verdict: bool| {
        let mut parts: Vec<(u64, String)> = matched
            .iter()
            .map(|(n, r)| {
                let v = if with_verdict {
                    format!(" ({})", r.verdict.as_str())
                } else {
                    String::new()
                };
                (*n, format!("{}{v}: {n}", r.name))
            })
            .collect();
        if unmatched > 0 {
            parts.push((unmatched, format!("no rule: {unmatched}")));
        }
        if own > 0 {
            parts.push((own, format!("records with a verdict of their own: {own}")));
        }
        parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        parts
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if matched.is_empty() && own == 0 {
        return (
            Verdict::Unknown,
            "no triage rule matches the message; add a [[triage.rule]] to dlq.toml \
             (the records carry no verdict of their own)"
                .to_owned(),
            "none".to_owned(),
        );
    }
    let top = matched
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.name.cmp(&a.1.name)))
        .map(|(_, r)| *r);
    let agree = top.filter(|t| {
        unmatched == 0 && own == 0 && matched.iter().all(|(_, r)| r.verdict == t.verdict)
    });
    let Some(rule) = agree else {
        return (
            Verdict::Unknown,
            format!("the records' triage disagrees: {}", list(true)),
            "mixed".to_owned(),
        );
    };
    g.triaged = true;
    if g.error_class == crate::envelope::UNKNOWN_ERROR_CLASS
        && matched.iter().all(|(_, r)| r.class == rule.class)
    {
        g.error_class = rule.class.clone();
    }
    let why = rule
        .reason
        .clone()
        .unwrap_or_else(|| format!("the message matches {}", rule.name));
    let rules_part = if matched.len() == 1 {
        format!("rule {}", rule.name)
    } else {
        format!("rules {}", list(false))
    };
    (
        rule.verdict,
        format!("{why} ({rules_part})"),
        rule.name.clone(),
    )
}

fn verdict(error_class: &str, retryable: u64, count: u64) -> (Verdict, String) {
    if error_class == crate::envelope::UNKNOWN_ERROR_CLASS {
        (
            Verdict::Unknown,
            "the records do not say what failed (foreign or raw records)".to_owned(),
        )
    } else if retryable == count {
        (
            Verdict::Transient,
            format!(
                "all {count} failures were retryable ({error_class}); replay once the cause is gone"
            ),
        )
    } else if retryable == 0 {
        (
            Verdict::Permanent,
            format!("no failure was retryable ({error_class}); a replay needs a fix first"),
        )
    } else {
        (
            Verdict::Unknown,
            format!("{retryable} of {count} failures were retryable"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use crate::{DeadLetter, Failure};

    fn rec(id: &str, class: &str, retryable: bool, topic: &str) -> StoredRecord {
        let f = Failure {
            stage: "validate".into(),
            error_class: class.into(),
            message: format!("{class} happened"),
            retryable,
        };
        let mut letter = DeadLetter::new(id, b"{}".to_vec(), &f);
        letter.source.topic = Some(topic.into());
        StoredRecord {
            dlq: format!("dlq.{topic}"),
            status: Status::Pending,
            stored_at: Utc::now(),
            settled_at: None,
            letter,
        }
    }

    #[test]
    fn groups_by_source_stage_and_class_with_verdicts() {
        let mut a = Analyzer::new();
        for i in 0..3 {
            a.add(&rec(
                &format!("t{i}"),
                "downstream.timeout",
                true,
                "rss.events",
            ));
        }
        a.add(&rec("w1", "validation.wrong_type", false, "rss.events"));
        a.add(&rec(
            "w2",
            "validation.wrong_type",
            false,
            "polymarket.price_hourly",
        ));
        let groups = a.finish();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[0].verdict, Verdict::Transient);
        assert_eq!(groups[0].sample_ids, vec!["t0", "t1", "t2"]);
        assert!(groups[1..].iter().all(|g| g.verdict == Verdict::Permanent));
        assert_ne!(groups[1].fingerprint, groups[2].fingerprint);
    }

    #[test]
    fn mixed_retryability_is_unknown() {
        let mut a = Analyzer::new();
        a.add(&rec("a", "x.y", true, "t"));
        a.add(&rec("b", "x.y", false, "t"));
        let g = &a.finish()[0];
        assert_eq!(g.verdict, Verdict::Unknown);
        assert!(g.verdict_reason.contains("1 of 2"));
    }

    #[test]
    fn replay_filter_selects_exactly_the_group() {
        let mut a = Analyzer::new();
        let r1 = rec("a", "x.y", true, "t");
        let r2 = rec("b", "x.z", true, "t");
        a.add(&r1);
        a.add(&r2);
        let (groups, grouper) = a.finish_with_grouper();
        let grouper = std::sync::Arc::new(grouper);
        for g in groups {
            let f = crate::filter::Filter::parse(&g.replay_filter)
                .expect("filter")
                .with_grouper(grouper.clone());
            assert_eq!(f.matches(&r1), g.error_class == "x.y");
            assert_eq!(f.matches(&r2), g.error_class == "x.z");
        }
    }

    fn with_message(id: &str, class: &str, message: &str) -> StoredRecord {
        let mut r = rec(id, class, false, "rss.events");
        r.letter.error = message.to_owned();
        r
    }

    #[test]
    fn variants_of_one_failure_share_a_template_inside_a_class() {
        let mut a = Analyzer::new();
        for (i, what) in ["a string", "a value", "an object", "a string"]
            .iter()
            .enumerate()
        {
            a.add(&with_message(
                &format!("m{i}"),
                "decode.malformed_json",
                &format!("EOF while parsing {what} at line 1 column {}", 10 + i),
            ));
        }
        // The same words in another class stay apart.
        a.add(&with_message(
            "o",
            "decode.other",
            "EOF while parsing a string at line 1 column 3",
        ));
        let groups = a.finish();
        assert_eq!(groups.len(), 2, "{groups:#?}");
        assert_eq!(groups[0].count, 4);
        assert_eq!(
            groups[0].typed_template,
            "EOF while parsing <*> <*> at line <NUM> column <NUM>"
        );
        assert_eq!(
            groups[0].template,
            "EOF while parsing <*> <*> at line <*> column <*>"
        );
    }

    #[test]
    fn persisted_miners_keep_groups_and_fingerprints_across_runs() {
        let first: Vec<StoredRecord> = (0..5)
            .map(|i| {
                with_message(
                    &format!("a{i}"),
                    "downstream.timeout",
                    &format!("request to host-{i} timed out after {i}0 ms"),
                )
            })
            .collect();
        let mut a = Analyzer::new();
        first.iter().for_each(|r| a.add(r));
        let (groups, grouper) = a.finish_with_grouper();
        assert_eq!(grouper.changed(), vec!["dlq.rss.events".to_owned()]);
        let state = grouper.state("dlq.rss.events").expect("state");

        // A later run restores the state and sees one more record.
        let mut restored = Grouper::new();
        restored.restore("dlq.rss.events", &state).expect("restore");
        assert!(restored.changed().is_empty());
        for r in &first {
            assert_eq!(restored.fingerprint(r), groups[0].fingerprint);
        }
        let mut b = Analyzer::new().with_grouper(restored);
        first.iter().for_each(|r| b.add(r));
        b.add(&with_message(
            "late",
            "downstream.timeout",
            "request to host-9 timed out after 90 ms",
        ));
        let later = b.finish();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].fingerprint, groups[0].fingerprint);
        assert_eq!(later[0].count, 6);

        // A record no persisted cluster knows gets its stateless fingerprint.
        let mut fresh = Grouper::new();
        fresh.restore("dlq.rss.events", &state).expect("restore");
        let stranger = with_message("s", "validation.other", "something else entirely");
        assert_eq!(
            fresh.fingerprint(&stranger),
            stateless_fingerprint(&stranger)
        );
    }

    #[test]
    fn unreadable_miner_state_is_an_error_not_a_panic() {
        let mut g = Grouper::new();
        assert!(g.restore("d", "{not json").is_err());
        assert!(g.restore("d", r#"{"version": 99, "miners": {}}"#).is_err());
        assert!(g.restore("d", r#"{"version": 1, "miners": {}}"#).is_ok());
    }

    fn json_rec(id: &str, class: &str, message: &str, payload: &str) -> StoredRecord {
        let f = Failure {
            stage: "validate".into(),
            error_class: class.into(),
            message: message.into(),
            retryable: false,
        };
        let mut letter = DeadLetter::new(id, payload.as_bytes().to_vec(), &f);
        letter.source.topic = Some("prices".into());
        letter.source.partition = Some(id.len() as i32 % 3);
        StoredRecord {
            dlq: "dlq.prices".into(),
            status: Status::Pending,
            stored_at: Utc::now(),
            settled_at: None,
            letter,
        }
    }

    #[test]
    fn groups_by_the_masked_root_cause_not_the_wrapper() {
        let mut a = Analyzer::new();
        let class = "sink.connect";
        for (i, m) in [
            "Listener failed; nested exception is java.net.ConnectException: Connection refused to 10.0.0.1:9092",
            "java.net.ConnectException: Connection refused to 10.0.0.7:9092",
            "Listener failed: java.net.ConnectException: Connection refused to 10.2.3.4:9092",
        ]
        .into_iter()
        .enumerate()
        {
            a.add(&json_rec(&format!("c{i}"), class, m, "{}"));
        }
        a.add(&json_rec(
            "r",
            class,
            "Listener failed; nested exception is java.net.SocketException: Connection reset",
            "{}",
        ));
        let groups = a.finish();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].count, 3);
        assert_eq!(
            groups[0].typed_template,
            "java.net.ConnectException: Connection refused to <IP>"
        );
        assert_eq!(
            groups[0].template,
            "java.net.ConnectException: Connection refused to <*>"
        );
        assert_eq!(
            groups[1].template,
            "java.net.SocketException: Connection reset"
        );
        assert_eq!(groups[0].partitions.values().sum::<u64>(), 3);
        assert_eq!(groups[0].keys.without_key, 3);
    }

    #[test]
    fn fingerprint_is_deterministic_and_pinned() {
        let a = json_rec(
            "a",
            "validation.wrong_type",
            r#"field "price": expected a number, got a string ("0.4")"#,
            "{}",
        );
        let b = json_rec(
            "b",
            "validation.wrong_type",
            r#"field "price": expected a number, got a string ("N/A")"#,
            "[]",
        );
        assert_eq!(stateless_fingerprint(&a), stateless_fingerprint(&b));
        // Pinned: a change here changes every fingerprint users have written
        // into filters, so it must be deliberate.
        assert_eq!(
            stateless_fingerprint(&a),
            fingerprint_of(
                "prices",
                "validate",
                "validation.wrong_type",
                "field <QUOTED>: expected a number, got a string (<QUOTED>)"
            )
        );
        assert_eq!(stateless_fingerprint(&a), "432e8032d6177e43");
        let c = json_rec(
            "c",
            "validation.wrong_type",
            r#"field "price": expected a string, got a number (7)"#,
            "{}",
        );
        assert_ne!(stateless_fingerprint(&a), stateless_fingerprint(&c));
    }

    #[test]
    fn field_diagnosis_reports_types_ranges_and_missing_paths_with_percentages() {
        let mut a = Analyzer::new();
        // The majority shape: price a number in [0, 1], volume >= 0.
        for i in 0..20 {
            a.add(&json_rec(
                &format!("ok{i}"),
                "validation.other",
                &format!("other problem {i}"),
                &format!(r#"{{"price": 0.{i}, "volume": {i}, "meta": {{"src": "x"}}}}"#),
            ));
        }
        // 9 of 10 with a string price.
        for i in 0..10 {
            let price = if i == 0 {
                "0.5".to_owned()
            } else {
                format!("\"0.{i}\"")
            };
            a.add(&json_rec(
                &format!("wt{i}"),
                "validation.wrong_type",
                r#"field "price": expected a number, got a string ("0.1")"#,
                &format!(r#"{{"price": {price}, "volume": 1, "meta": {{"src": "x"}}}}"#),
            ));
        }
        for i in 0..4 {
            a.add(&json_rec(
                &format!("oor{i}"),
                "validation.price_out_of_range",
                &format!("invalid price: got 1.{i}"),
                &format!(r#"{{"price": 1.{i}5, "volume": -3, "meta": {{}}}}"#),
            ));
        }
        a.add(&json_rec(
            "bad",
            "decode.malformed_json",
            "malformed JSON",
            "{\"price\":",
        ));
        let groups = a.finish();
        let by_class = |c: &str| groups.iter().find(|g| g.error_class == c).expect(c);

        let wt = by_class("validation.wrong_type");
        assert_eq!(wt.fields.len(), 1, "{:#?}", wt.fields);
        let f = &wt.fields[0];
        assert_eq!(
            (f.path.as_str(), f.issue),
            ("price", FieldIssue::UnexpectedType)
        );
        assert_eq!(f.percent, 90.0);
        assert_eq!(f.baseline_percent, Some(0.0));
        assert_eq!(f.found.as_deref(), Some("string"));
        assert_eq!(f.expected.as_deref(), Some("number"));
        assert_eq!(f.types["string"], 90.0);
        assert_eq!(f.types["number"], 10.0);
        assert_eq!(
            f.detail,
            "`price` is a string in 90% of the group (usually a number)"
        );

        let oor = by_class("validation.price_out_of_range");
        let issues: Vec<(&str, FieldIssue, f64)> = oor
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.issue, f.percent))
            .collect();
        assert_eq!(
            issues,
            vec![
                ("meta.src", FieldIssue::Missing, 100.0),
                ("price", FieldIssue::OutOfRange, 100.0),
                ("volume", FieldIssue::OutOfRange, 100.0),
            ]
        );
        assert_eq!(oor.fields[1].expected.as_deref(), Some("[0, 1]"));
        assert_eq!(oor.fields[2].expected.as_deref(), Some(">= 0"));

        let bad = by_class("decode.malformed_json");
        assert_eq!(
            bad.payloads,
            PayloadSummary {
                json_objects: 0,
                other: 1
            }
        );
        assert!(bad.fields.is_empty());
        // The majority itself stands out in nothing.
        assert!(by_class("validation.other").fields.is_empty());
    }

    fn seed(id: &str, error: &str) -> StoredRecord {
        let line = serde_json::json!({
            "original_record": {"event_id": id},
            "error": error,
            "timestamp": "2026-11-29T07:00:00Z",
        })
        .to_string();
        let mut letter = crate::envelope::decode(line.as_bytes(), id);
        assert_eq!(letter.origin, crate::envelope::Origin::Seed);
        letter.source.topic = Some("rss.events".into());
        StoredRecord {
            dlq: "dlq.rss.events".into(),
            status: Status::Pending,
            stored_at: Utc::now(),
            settled_at: None,
            letter,
        }
    }

    #[test]
    fn seed_records_get_a_class_and_verdict_from_the_triage_rule_that_matched() {
        let recs = [
            seed(
                "a",
                "Message production error: MessageTimedOut (Local: Message timed out)",
            ),
            seed(
                "b",
                "Message production error: MessageTimedOut (Local: Message timed out)",
            ),
            seed(
                "c",
                "java.lang.NumberFormatException: For input string: \"abc\"",
            ),
            seed(
                "d",
                "duplicate key value violates unique constraint \"events_pkey\"",
            ),
            seed("e", "the flux capacitor is unhappy"),
        ];
        let mut a = Analyzer::with_members();
        recs.iter().for_each(|r| a.add(r));
        let (groups, grouper) = a.finish_with_grouper();
        let by_id = |id: &str| {
            groups
                .iter()
                .find(|g| g.sample_ids.contains(&id.to_owned()))
                .expect(id)
        };
        let t = by_id("a");
        assert_eq!(t.count, 2);
        assert_eq!(
            (
                t.error_class.as_str(),
                t.verdict,
                t.verdict_rule.as_str(),
                t.triaged
            ),
            (
                "kafka.delivery_timeout",
                Verdict::Transient,
                "kafka.message_timed_out",
                true
            )
        );
        assert!(
            t.verdict_reason.contains("rule kafka.message_timed_out"),
            "{}",
            t.verdict_reason
        );
        let p = by_id("c");
        assert_eq!(
            (p.error_class.as_str(), p.verdict),
            ("decode.wrong_type", Verdict::Permanent)
        );
        assert_eq!(by_id("d").verdict, Verdict::Duplicate);
        let u = by_id("e");
        assert_eq!(
            (
                u.error_class.as_str(),
                u.verdict,
                u.verdict_rule.as_str(),
                u.triaged
            ),
            ("unknown", Verdict::Unknown, "none", false)
        );
        // The class shown is the triage's; the fingerprint is still the
        // records' own, so a group's filter selects exactly it in every
        // command, whatever rules they load.
        let grouper = std::sync::Arc::new(grouper);
        for g in &groups {
            let f = crate::filter::Filter::parse(&g.replay_filter)
                .expect("filter")
                .with_grouper(grouper.clone());
            let selected: Vec<String> = recs
                .iter()
                .filter(|r| f.matches(r))
                .map(|r| r.letter.id.clone())
                .collect();
            assert_eq!(Some(&selected), g.members.as_ref());
        }
    }

    #[test]
    fn raw_records_name_the_rule_that_says_they_carry_no_error() {
        let mut a = Analyzer::new();
        for i in 0..2 {
            let letter = crate::envelope::decode(b"not an envelope", &format!("raw-{i}"));
            assert_eq!(letter.origin, crate::envelope::Origin::Raw);
            a.add(&StoredRecord {
                dlq: "dlq.t".into(),
                status: Status::Pending,
                stored_at: Utc::now(),
                settled_at: None,
                letter,
            });
        }
        let g = &a.finish()[0];
        assert_eq!(
            (
                g.count,
                g.verdict,
                g.verdict_rule.as_str(),
                g.error_class.as_str()
            ),
            (2, Verdict::Unknown, "raw.no_error", "unknown.raw")
        );
        assert!(
            g.verdict_reason.contains("rule raw.no_error"),
            "{}",
            g.verdict_reason
        );
    }

    #[test]
    fn records_with_their_own_verdict_are_not_triaged() {
        // A dlq envelope says "not retryable"; the message alone would be
        // triaged transient.
        let mut r = with_message("own", "sink.http", "HTTP 503 Service Unavailable");
        r.letter.retryable = false;
        let mut a = Analyzer::new();
        a.add(&r);
        let g = &a.finish()[0];
        assert_eq!(
            (
                g.verdict,
                g.verdict_rule.as_str(),
                g.triaged,
                g.error_class.as_str()
            ),
            (Verdict::Permanent, "record", false, "sink.http")
        );
    }

    #[test]
    fn connect_records_keep_their_exception_class_and_get_the_triage_verdict() {
        let mut r = with_message(
            "k",
            "org.apache.kafka.connect.errors.DataException",
            "Converting byte[] to Kafka Connect data failed due to serialization error",
        );
        r.letter.origin = crate::envelope::Origin::Connect;
        let mut timeout = with_message(
            "t",
            "org.apache.kafka.common.errors.TimeoutException",
            "Expiring 3 record(s) for prices-0: 120001 ms has passed since batch creation",
        );
        timeout.letter.origin = crate::envelope::Origin::Spring;
        let mut a = Analyzer::new();
        a.add(&r);
        a.add(&timeout);
        let groups = a.finish();
        let dx = groups.iter().find(|g| g.sample_ids == ["k"]).expect("k");
        assert_eq!(
            dx.error_class,
            "org.apache.kafka.connect.errors.DataException"
        );
        assert_eq!((dx.verdict, dx.triaged), (Verdict::Permanent, true));
        let to = groups.iter().find(|g| g.sample_ids == ["t"]).expect("t");
        assert_eq!(to.verdict, Verdict::Transient);
    }

    #[test]
    fn a_group_whose_records_triage_differently_is_unknown_and_says_why() {
        let rule = |name: &str, verdict, pattern: &str| crate::triage::Rule {
            name: name.into(),
            class: format!("x.{name}"),
            verdict,
            patterns: vec![pattern.into()],
            reason: None,
        };
        // The masked template is one ("order <NUM> failed"); the rules tell
        // the records apart by the number.
        let triage = Triage::new(vec![
            rule("t", Verdict::Transient, "order 1 "),
            rule("p", Verdict::Permanent, "order 2 "),
        ])
        .expect("rules");
        let mut a = Analyzer::new().with_triage(Arc::new(triage));
        a.add(&seed("1", "order 1 failed"));
        a.add(&seed("2", "order 2 failed"));
        a.add(&seed("3", "order 1 failed"));
        let groups = a.finish();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        let g = &groups[0];
        assert_eq!(
            (
                g.verdict,
                g.verdict_rule.as_str(),
                g.triaged,
                g.error_class.as_str()
            ),
            (Verdict::Unknown, "mixed", false, "unknown")
        );
        assert_eq!(
            g.verdict_reason,
            "the records' triage disagrees: t (transient): 2, p (permanent): 1"
        );
    }

    #[test]
    fn user_rules_decide_before_the_shipped_ones() {
        let triage = Triage::from_config(
            "[[triage.rule]]\nname = \"acme.timeouts_are_bugs\"\nclass = \"acme.bug\"\n\
             verdict = \"permanent\"\npatterns = [\"MessageTimedOut\"]\n",
            true,
        )
        .expect("config");
        let mut a = Analyzer::new().with_triage(Arc::new(triage));
        a.add(&seed("a", "Message production error: MessageTimedOut"));
        let g = &a.finish()[0];
        assert_eq!(
            (g.verdict, g.verdict_rule.as_str(), g.error_class.as_str()),
            (Verdict::Permanent, "acme.timeouts_are_bugs", "acme.bug")
        );
    }

    #[test]
    fn foreign_messages_that_differ_in_a_word_are_two_groups() {
        let mut a = Analyzer::new();
        a.add(&seed("a", "java.net.SocketException: Connection refused"));
        a.add(&seed("b", "java.net.SocketException: Connection reset"));
        assert_eq!(a.finish().len(), 2);
    }

    #[test]
    fn filter_by_fingerprint_selects_exactly_the_group_also_within_a_class() {
        let recs = [
            json_rec("a", "x.y", "timeout after 30s talking to 10.0.0.1", "{}"),
            json_rec("b", "x.y", "timeout after 31s talking to 10.0.0.2", "{}"),
            json_rec("c", "x.y", "connection refused", "{}"),
        ];
        let mut a = Analyzer::with_members();
        for r in &recs {
            a.add(r);
        }
        let (groups, grouper) = a.finish_with_grouper();
        let grouper = std::sync::Arc::new(grouper);
        assert_eq!(groups.len(), 2);
        for g in &groups {
            let f = crate::filter::Filter::parse(&g.replay_filter)
                .expect("filter")
                .with_grouper(grouper.clone());
            let selected: Vec<String> = recs
                .iter()
                .filter(|r| f.matches(r))
                .map(|r| r.letter.id.clone())
                .collect();
            assert_eq!(Some(&selected), g.members.as_ref());
        }
        assert_eq!(
            groups[0].members.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
    }
}
