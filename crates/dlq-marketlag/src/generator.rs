//! A seeded generator of MarketLag records with a realistic mix of failures.
//!
//! Each record is one line of single-line JSON (no newline byte anywhere,
//! even in invalid lines) with at most one defect, and comes with the class
//! [`crate::validate`] gives it ([`Expected`]) and, where a jq expression
//! repairs it, that expression. Generator and validator agree on every line;
//! a test holds them to it.
//!
//! Reproducible: the same [`GeneratorConfig`] gives the same bytes on every
//! platform (ChaCha8 seeded with `seed`, no clock, no global state).
//!
//! Unique: every line holds its record's id (the id field is never dropped,
//! nulled or cut off), and ids are distinct for distinct indexes of one seed.
//! Empty and whitespace-only lines are never generated, because they cannot
//! be unique: tests that need them craft them.
//!
//! Layout of the data: RSS items are spread over time from
//! 2026-11-01T00:00:00Z, one every 23 seconds on average; Polymarket prices
//! cover a fixed set of markets, a Yes and a No price per market and hour
//! (their prices add up to 1), hour after hour from 2026-11-01T00:00:00Z.
//! Times wrap after 400 years, so any record count gives valid dates.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::class;
use crate::corpus::{FEEDS, HEADLINES, MARKETS};
use crate::hash::fmix64;
use crate::pipeline::Pipeline;

/// jq fix for `price` sent as a string: `.price |= tonumber`.
pub const FIX_PRICE_TONUMBER: &str = ".price |= tonumber";
/// jq fix for `tags` sent as one comma-separated string: `.tags |= split(",")`.
pub const FIX_TAGS_SPLIT: &str = r#".tags |= split(",")"#;
/// jq fix for an hourly timestamp with minutes, seconds or fractions: floor it
/// to its hour (the hour bucket the price belongs to). Works on the
/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` form producers send.
pub const FIX_FLOOR_TO_HOUR: &str = r#".timestamp |= (.[0:13] + ":00:00Z")"#;
/// jq fix for a record that was JSON-encoded twice (a JSON string holding
/// the object): `fromjson`.
pub const FIX_FROMJSON: &str = "fromjson";

const RSS_FIXES: &[(&str, &str, &str)] = &[
    (class::WRONG_TYPE, "tags", FIX_TAGS_SPLIT),
    (class::NOT_AN_OBJECT, "", FIX_FROMJSON),
];
const PRICE_FIXES: &[(&str, &str, &str)] = &[
    (class::WRONG_TYPE, "price", FIX_PRICE_TONUMBER),
    (
        class::TIMESTAMP_NOT_HOUR_ALIGNED,
        "timestamp",
        FIX_FLOOR_TO_HOUR,
    ),
    (class::NOT_AN_OBJECT, "", FIX_FROMJSON),
];

/// The repairs the demo applies, as `(error class, field, jq fix)`. The field
/// is the [`ValidationError::field`](crate::ValidationError::field) the fix
/// is for; `""` means the record as a whole (where `field` is `None`).
///
/// A fix is for the failures the generator produces under that class and
/// field; applied to another record of the same class it may fail again
/// (e.g. `tonumber` on `"N/A"`), which is what a replay's `replays` counter
/// and parking are for.
pub fn fixes(pipeline: Pipeline) -> &'static [(&'static str, &'static str, &'static str)] {
    match pipeline {
        Pipeline::Rss => RSS_FIXES,
        Pipeline::Polymarket => PRICE_FIXES,
    }
}

/// Which fraction of generated records gets each defect. Each record gets at
/// most one. Fractions for defects that do not apply to the pipeline are
/// ignored (e.g. `bad_url` for Polymarket).
///
/// The default (about 5.3% failures for RSS, 6.2% for Polymarket) is:
///
/// | field | default | pipelines | class | fixable by |
/// |---|---|---|---|---|
/// | `malformed_json` | 1% | both | `decode.malformed_json` (a truncated line) | — |
/// | `invalid_utf8` | 0.3% | both | `decode.invalid_utf8` (Latin-1/CP1252 bytes in the title or question) | — |
/// | `not_an_object` | 0.2% | both | `decode.not_an_object` (the object JSON-encoded twice) | `fromjson` |
/// | `missing_field` | 1% | both | `validation.missing_field` | — |
/// | `null_field` | 0.5% | both | `validation.null_field` | — |
/// | `wrong_type` | 1% | both | `validation.wrong_type`: RSS `tags` as `"a,b"`, Polymarket `price` as `"0.42"` | `.tags \|= split(",")` / `.price \|= tonumber` |
/// | `bad_timestamp` | 0.3% | both | `validation.bad_timestamp` (RFC 2822, no offset, epoch string, ...) | — |
/// | `bad_url` | 1% | RSS | `validation.bad_url` (relative, no scheme, `htps://`) | — |
/// | `timestamp_not_hour_aligned` | 1% | Polymarket | `validation.timestamp_not_hour_aligned` | `.timestamp \|= (.[0:13] + ":00:00Z")` |
/// | `price_out_of_range` | 0.5% | Polymarket | `validation.price_out_of_range` (1.7, 42, -0.05) | — |
/// | `negative_volume` | 0.2% | Polymarket | `validation.negative_volume` | — |
/// | `bad_market_id` | 0.2% | Polymarket | `validation.bad_market_id` | — |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureMix {
    /// A line cut short (a producer that wrote a partial buffer).
    pub malformed_json: f64,
    /// A line with bytes in a legacy 8-bit encoding inside a string.
    pub invalid_utf8: f64,
    /// A record JSON-encoded twice: a JSON string holding the object.
    pub not_an_object: f64,
    /// A required field left out (never the id).
    pub missing_field: f64,
    /// A required field set to `null` (never the id).
    pub null_field: f64,
    /// RSS `tags` as a comma-separated string; Polymarket `price` as a string.
    pub wrong_type: f64,
    /// A timestamp that is not RFC 3339.
    pub bad_timestamp: f64,
    /// RSS only: a `link` that is not an absolute http(s) URL.
    pub bad_url: f64,
    /// Polymarket only: a timestamp with minutes, seconds or fractions.
    pub timestamp_not_hour_aligned: f64,
    /// Polymarket only: a price outside [0, 1].
    pub price_out_of_range: f64,
    /// Polymarket only: a negative volume.
    pub negative_volume: f64,
    /// Polymarket only: a market id that is not `0x` + 40 hex digits.
    pub bad_market_id: f64,
}

impl Default for FailureMix {
    fn default() -> Self {
        FailureMix {
            malformed_json: 0.01,
            invalid_utf8: 0.003,
            not_an_object: 0.002,
            missing_field: 0.01,
            null_field: 0.005,
            wrong_type: 0.01,
            bad_timestamp: 0.003,
            bad_url: 0.01,
            timestamp_not_hour_aligned: 0.01,
            price_out_of_range: 0.005,
            negative_volume: 0.002,
            bad_market_id: 0.002,
        }
    }
}

/// The error of [`FailureMix::check`]: every problem found, at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid failure mix: {}", problems.join("; "))]
pub struct MixError {
    /// One sentence per problem.
    pub problems: Vec<String>,
}

impl FailureMix {
    /// No failures: every record is valid.
    pub const fn none() -> Self {
        FailureMix {
            malformed_json: 0.0,
            invalid_utf8: 0.0,
            not_an_object: 0.0,
            missing_field: 0.0,
            null_field: 0.0,
            wrong_type: 0.0,
            bad_timestamp: 0.0,
            bad_url: 0.0,
            timestamp_not_hour_aligned: 0.0,
            price_out_of_range: 0.0,
            negative_volume: 0.0,
            bad_market_id: 0.0,
        }
    }

    fn fields(&self) -> [(&'static str, f64, Defect); 12] {
        [
            ("malformed_json", self.malformed_json, Defect::MalformedJson),
            ("invalid_utf8", self.invalid_utf8, Defect::InvalidUtf8),
            ("not_an_object", self.not_an_object, Defect::NotAnObject),
            ("missing_field", self.missing_field, Defect::MissingField),
            ("null_field", self.null_field, Defect::NullField),
            ("wrong_type", self.wrong_type, Defect::WrongType),
            ("bad_timestamp", self.bad_timestamp, Defect::BadTimestamp),
            ("bad_url", self.bad_url, Defect::BadUrl),
            (
                "timestamp_not_hour_aligned",
                self.timestamp_not_hour_aligned,
                Defect::UnalignedTimestamp,
            ),
            (
                "price_out_of_range",
                self.price_out_of_range,
                Defect::PriceOutOfRange,
            ),
            (
                "negative_volume",
                self.negative_volume,
                Defect::NegativeVolume,
            ),
            ("bad_market_id", self.bad_market_id, Defect::BadMarketId),
        ]
    }

    /// The fraction of `pipeline`'s records that are invalid (the sum of the
    /// fractions that apply to it, as [`generate`] uses them: each clamped to
    /// [0, 1], the sum capped at 1).
    pub fn total(&self, pipeline: Pipeline) -> f64 {
        self.fields()
            .iter()
            .filter(|(_, _, d)| d.applies_to(pipeline))
            .map(|(_, r, _)| clamp_rate(*r))
            .sum::<f64>()
            .min(1.0)
    }

    /// Checks that every fraction is a number in [0, 1] and that the
    /// fractions sum to at most 1 for each pipeline; reports every problem.
    /// [`generate`] does not require it: it clamps instead (NaN counts as 0,
    /// and past a sum of 1 the defects later in the table get less).
    pub fn check(&self) -> Result<(), MixError> {
        let mut problems: Vec<String> = self
            .fields()
            .iter()
            .filter(|(_, r, _)| !(0.0..=1.0).contains(r))
            .map(|(name, r, _)| format!("{name} is {r}, expected a fraction in [0, 1]"))
            .collect();
        for p in Pipeline::ALL {
            let sum: f64 = self
                .fields()
                .iter()
                .filter(|(_, _, d)| d.applies_to(p))
                .map(|(_, r, _)| clamp_rate(*r))
                .sum();
            if sum > 1.0 {
                problems.push(format!("the fractions for {p} sum to {sum}, more than 1"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MixError { problems })
        }
    }
}

fn clamp_rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Which pipeline's records.
    pub pipeline: Pipeline,
    /// How many records.
    pub records: u64,
    /// The seed: the same seed gives the same bytes. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Which fraction of records gets which defect. Default:
    /// [`FailureMix::default`].
    #[serde(default)]
    pub mix: FailureMix,
}

impl GeneratorConfig {
    /// `records` records of `pipeline` from `seed`, with the default mix.
    pub fn new(pipeline: Pipeline, records: u64, seed: u64) -> Self {
        GeneratorConfig {
            pipeline,
            records,
            seed,
            mix: FailureMix::default(),
        }
    }
}

/// What [`crate::validate`] says about a generated line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    /// The line is valid.
    Valid,
    /// The line is invalid with this class.
    Invalid {
        /// The [`class`] constant `validate` returns.
        class: &'static str,
        /// The jq expression that repairs it (one of [`fixes`]), if any.
        fixable_by: Option<&'static str>,
    },
}

/// One generated line and what validation says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// The record's bytes, without a trailing newline. Never contains a
    /// newline byte.
    pub line: Vec<u8>,
    /// What [`crate::validate`] returns for it.
    pub expected: Expected,
}

/// Generates `config.records` records. See the [module docs](self).
///
/// ```
/// use dlq_marketlag::{Expected, GeneratorConfig, Limits, Pipeline, generate, validate};
///
/// let config = GeneratorConfig::new(Pipeline::Polymarket, 1_000, 42);
/// for record in generate(&config) {
///     let verdict = validate(Pipeline::Polymarket, &record.line, &Limits::default());
///     match record.expected {
///         Expected::Valid => assert!(verdict.is_ok()),
///         Expected::Invalid { class, .. } => assert_eq!(verdict.unwrap_err().class, class),
///     }
/// }
/// ```
pub fn generate(config: &GeneratorConfig) -> Generator {
    Generator::new(config)
}

/// The iterator [`generate`] returns.
#[derive(Debug, Clone)]
pub struct Generator {
    pipeline: Pipeline,
    records: u64,
    index: u64,
    rng: ChaCha8Rng,
    /// Cumulative thresholds in [0, 1]: a draw below `.0` (and above the
    /// previous threshold) gets defect `.1`.
    thresholds: Vec<(f64, Defect)>,
    /// Key of the id bijection.
    id_key: u64,
    /// Key of the Polymarket price of each (market, hour).
    price_key: u64,
    /// 40 hex digits per market of [`MARKETS`].
    market_ids: Vec<[u8; 40]>,
    /// The raw JSON value a field edit writes.
    scratch: Vec<u8>,
    /// Capacity for the next line: the longest line so far.
    capacity: usize,
}

/// At most one defect per record. Private: its class is what is public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    MalformedJson,
    InvalidUtf8,
    NotAnObject,
    MissingField,
    NullField,
    WrongType,
    BadTimestamp,
    BadUrl,
    UnalignedTimestamp,
    PriceOutOfRange,
    NegativeVolume,
    BadMarketId,
}

impl Defect {
    fn applies_to(self, pipeline: Pipeline) -> bool {
        match self {
            Defect::BadUrl => pipeline == Pipeline::Rss,
            Defect::UnalignedTimestamp
            | Defect::PriceOutOfRange
            | Defect::NegativeVolume
            | Defect::BadMarketId => pipeline == Pipeline::Polymarket,
            _ => true,
        }
    }

    fn expected(self, pipeline: Pipeline) -> Expected {
        let (class, fixable_by) = match self {
            Defect::None => return Expected::Valid,
            Defect::MalformedJson => (class::MALFORMED_JSON, None),
            Defect::InvalidUtf8 => (class::INVALID_UTF8, None),
            Defect::NotAnObject => (class::NOT_AN_OBJECT, Some(FIX_FROMJSON)),
            Defect::MissingField => (class::MISSING_FIELD, None),
            Defect::NullField => (class::NULL_FIELD, None),
            Defect::WrongType => (
                class::WRONG_TYPE,
                Some(match pipeline {
                    Pipeline::Rss => FIX_TAGS_SPLIT,
                    Pipeline::Polymarket => FIX_PRICE_TONUMBER,
                }),
            ),
            Defect::BadTimestamp => (class::BAD_TIMESTAMP, None),
            Defect::BadUrl => (class::BAD_URL, None),
            Defect::UnalignedTimestamp => {
                (class::TIMESTAMP_NOT_HOUR_ALIGNED, Some(FIX_FLOOR_TO_HOUR))
            }
            Defect::PriceOutOfRange => (class::PRICE_OUT_OF_RANGE, None),
            Defect::NegativeVolume => (class::NEGATIVE_VOLUME, None),
            Defect::BadMarketId => (class::BAD_MARKET_ID, None),
        };
        Expected::Invalid { class, fixable_by }
    }
}

/// How a field edit changes the target field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep,
    Drop,
    Null,
    /// Write the generator's scratch bytes as the value.
    Raw,
}

/// Byte positions in a line, for the whole-line defects.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    /// Just after the id's closing quote.
    id_end: usize,
    /// The free text (title or question) content, quotes excluded.
    text: (usize, usize),
}

/// Seconds from 1970-01-01 to 2026-11-01T00:00:00Z.
const BASE_SECS: i64 = days_from_civil(2026, 11, 1) * 86_400;
/// Times wrap after 400 years (a whole Gregorian cycle, so weekdays stay right).
const CYCLE_SECS: u64 = 146_097 * 86_400;
const CYCLE_HOURS: u64 = 146_097 * 24;
/// Mean spacing of RSS items, in seconds.
const RSS_SPACING: u64 = 23;

const ID_SALT_RSS: u64 = 0x7273_732d_6576_656e; // "rss-even"
const ID_SALT_PRICE: u64 = 0x7068_2d70_7269_6365; // "ph-price"
const PRICE_SALT: u64 = 0x6d61_726b_6574_6c61; // "marketla"

impl Generator {
    fn new(config: &GeneratorConfig) -> Self {
        let mut cumulative = 0.0;
        let thresholds = config
            .mix
            .fields()
            .iter()
            .filter(|(_, _, d)| d.applies_to(config.pipeline))
            .map(|&(_, r, d)| {
                cumulative = (cumulative + clamp_rate(r)).min(1.0);
                (cumulative, d)
            })
            .collect();
        let salt = match config.pipeline {
            Pipeline::Rss => ID_SALT_RSS,
            Pipeline::Polymarket => ID_SALT_PRICE,
        };
        let market_ids = (0..MARKETS.len() as u64)
            .map(|m| {
                let a = fmix64(PRICE_SALT ^ (m + 1));
                let b = fmix64(a);
                let c = fmix64(b);
                let mut hex = [0u8; 40];
                let mut out = Vec::with_capacity(40);
                push_hex(&mut out, a, 16);
                push_hex(&mut out, b, 16);
                push_hex(&mut out, c, 8);
                hex.copy_from_slice(&out);
                hex
            })
            .collect();
        Generator {
            pipeline: config.pipeline,
            records: config.records,
            index: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            thresholds,
            id_key: fmix64(config.seed ^ salt),
            price_key: fmix64(config.seed.wrapping_add(PRICE_SALT)),
            market_ids,
            scratch: Vec::with_capacity(128),
            capacity: 256,
        }
    }

    fn pick_defect(&mut self) -> Defect {
        let u: f64 = self.rng.random();
        self.thresholds
            .iter()
            .find(|(t, _)| u < *t)
            .map_or(Defect::None, |(_, d)| *d)
    }

    fn rss(&mut self, i: u64, defect: Defect, out: &mut Vec<u8>) -> Marks {
        let feed = &FEEDS[self.rng.random_range(0..FEEDS.len())];
        let item = &HEADLINES[self.rng.random_range(0..HEADLINES.len())];
        let id = fmix64(self.id_key.wrapping_add(i));
        let jitter = self.rng.random_range(0..RSS_SPACING);
        let utc =
            BASE_SECS + (i.wrapping_mul(RSS_SPACING).wrapping_add(jitter) % CYCLE_SECS) as i64;

        const TITLE: usize = 1;
        const LINK: usize = 2;
        const PUBLISHED: usize = 4;
        const TAGS: usize = 6;
        self.scratch.clear();
        let s = &mut self.scratch;
        let (target, edit) = match defect {
            Defect::MissingField => (self.rng.random_range(1..=6), Edit::Drop),
            Defect::NullField => (self.rng.random_range(1..=6), Edit::Null),
            Defect::WrongType => {
                s.push(b'"');
                for (k, tag) in item.tags.iter().enumerate() {
                    if k > 0 {
                        s.push(b',');
                    }
                    s.extend_from_slice(tag.as_bytes());
                }
                s.push(b'"');
                (TAGS, Edit::Raw)
            }
            Defect::BadTimestamp => {
                s.push(b'"');
                match self.rng.random_range(0..3) {
                    0 => push_rfc2822(s, utc),
                    1 => push_datetime(s, utc, b'T'),
                    _ => {
                        // US style, minutes only.
                        let (y, m, d, hh, mm, _) = split_secs(utc);
                        push_2(s, m);
                        s.push(b'/');
                        push_2(s, d);
                        s.push(b'/');
                        push_u64(s, y as u64);
                        s.push(b' ');
                        push_2(s, hh);
                        s.push(b':');
                        push_2(s, mm);
                    }
                }
                s.push(b'"');
                (PUBLISHED, Edit::Raw)
            }
            Defect::BadUrl => {
                s.push(b'"');
                match self.rng.random_range(0..3) {
                    0 => {}
                    1 => s.extend_from_slice(b"htps://"),
                    _ => s.extend_from_slice(feed.site.as_bytes()),
                }
                s.push(b'/');
                push_link_path(s, feed.section, item.slug, id);
                s.push(b'"');
                (LINK, Edit::Raw)
            }
            _ => (0, Edit::Keep),
        };
        let mut w = FieldWriter {
            out,
            target,
            edit,
            raw: &self.scratch,
        };
        let mut marks = Marks::default();
        w.out.extend_from_slice(b"{\"id\":\"rss-");
        push_hex(w.out, id, 16);
        w.out.push(b'"');
        marks.id_end = w.out.len();
        w.field(TITLE, "title", |o| {
            let start = o.len() + 1;
            push_json_str(o, item.title);
            marks.text = (start, o.len() - 1);
        });
        w.field(LINK, "link", |o| {
            o.extend_from_slice(b"\"https://");
            o.extend_from_slice(feed.site.as_bytes());
            o.push(b'/');
            push_link_path(o, feed.section, item.slug, id);
            o.push(b'"');
        });
        w.field(3, "feed", |o| push_json_str(o, feed.name));
        w.field(PUBLISHED, "published", |o| {
            o.push(b'"');
            push_datetime(o, utc + feed.offset.1, b'T');
            o.extend_from_slice(feed.offset.0.as_bytes());
            o.push(b'"');
        });
        w.field(5, "summary", |o| push_json_str(o, item.summary));
        w.field(TAGS, "tags", |o| {
            o.push(b'[');
            for (k, tag) in item.tags.iter().enumerate() {
                if k > 0 {
                    o.push(b',');
                }
                push_json_str(o, tag);
            }
            o.push(b']');
        });
        w.out.push(b'}');
        marks
    }

    fn price(&mut self, i: u64, defect: Defect, out: &mut Vec<u8>) -> Marks {
        let pair = i >> 1;
        let is_no = i & 1 == 1;
        let markets = MARKETS.len() as u64;
        let market = (pair % markets) as usize;
        let hour = (pair / markets) % CYCLE_HOURS;
        let utc = BASE_SECS + (hour * 3600) as i64;
        let yes_milli = 1 + fmix64(self.price_key ^ pair) % 999;
        let milli = if is_no { 1000 - yes_milli } else { yes_milli };
        let volume_cents: u64 = self.rng.random_range(1..2_000_000_000);
        let id = fmix64(self.id_key.wrapping_add(i));

        const MARKET_ID: usize = 1;
        const PRICE: usize = 4;
        const VOLUME: usize = 5;
        const TIMESTAMP: usize = 6;
        self.scratch.clear();
        let s = &mut self.scratch;
        let (target, edit) = match defect {
            Defect::MissingField => (self.rng.random_range(1..=6), Edit::Drop),
            Defect::NullField => (self.rng.random_range(1..=6), Edit::Null),
            Defect::WrongType => {
                s.push(b'"');
                push_price(s, milli);
                s.push(b'"');
                (PRICE, Edit::Raw)
            }
            Defect::PriceOutOfRange => {
                match self.rng.random_range(0..3) {
                    // Sent in percent.
                    0 => push_u64(s, self.rng.random_range(2..=99)),
                    1 => {
                        s.extend_from_slice(b"1.");
                        push_frac3(s, self.rng.random_range(1..=999));
                    }
                    _ => {
                        s.extend_from_slice(b"-0.");
                        push_frac3(s, self.rng.random_range(1..=99) * 10);
                    }
                }
                (PRICE, Edit::Raw)
            }
            Defect::NegativeVolume => {
                s.push(b'-');
                push_cents(s, volume_cents);
                (VOLUME, Edit::Raw)
            }
            Defect::BadTimestamp => {
                s.push(b'"');
                match self.rng.random_range(0..3) {
                    0 => push_datetime(s, utc, b'T'),
                    1 => push_u64(s, utc as u64),
                    _ => {
                        push_datetime(s, utc, b' ');
                        s.truncate(s.len() - 3);
                    }
                }
                s.push(b'"');
                (TIMESTAMP, Edit::Raw)
            }
            Defect::UnalignedTimestamp => {
                s.push(b'"');
                if self.rng.random_range(0..5) == 0 {
                    push_datetime(s, utc, b'T');
                    s.push(b'.');
                    push_frac3(s, self.rng.random_range(1..=999));
                } else {
                    push_datetime(s, utc + self.rng.random_range(1..3600), b'T');
                }
                s.extend_from_slice(b"Z\"");
                (TIMESTAMP, Edit::Raw)
            }
            Defect::BadMarketId => {
                let hex = &self.market_ids[market];
                s.push(b'"');
                match self.rng.random_range(0..3) {
                    0 => s.extend_from_slice(hex),
                    1 => {
                        s.extend_from_slice(b"0x");
                        s.extend_from_slice(&hex[..38]);
                    }
                    _ => {
                        s.extend_from_slice(b"0X");
                        s.extend_from_slice(hex);
                    }
                }
                s.push(b'"');
                (MARKET_ID, Edit::Raw)
            }
            _ => (0, Edit::Keep),
        };
        let mut w = FieldWriter {
            out,
            target,
            edit,
            raw: &self.scratch,
        };
        let mut marks = Marks::default();
        w.out.extend_from_slice(b"{\"event_id\":\"ph-");
        push_hex(w.out, id, 16);
        w.out.push(b'"');
        marks.id_end = w.out.len();
        let market_hex = &self.market_ids[market];
        w.field(MARKET_ID, "market_id", |o| {
            o.extend_from_slice(b"\"0x");
            o.extend_from_slice(market_hex);
            o.push(b'"');
        });
        w.field(2, "question", |o| {
            let start = o.len() + 1;
            push_json_str(o, MARKETS[market]);
            marks.text = (start, o.len() - 1);
        });
        w.field(3, "outcome", |o| {
            o.extend_from_slice(if is_no { b"\"No\"" } else { b"\"Yes\"" });
        });
        w.field(PRICE, "price", |o| push_price(o, milli));
        w.field(VOLUME, "volume", |o| push_cents(o, volume_cents));
        w.field(TIMESTAMP, "timestamp", |o| {
            o.push(b'"');
            push_datetime(o, utc, b'T');
            o.extend_from_slice(b"Z\"");
        });
        w.out.push(b'}');
        marks
    }
}

impl Iterator for Generator {
    type Item = GeneratedRecord;

    fn next(&mut self) -> Option<GeneratedRecord> {
        if self.index >= self.records {
            return None;
        }
        let i = self.index;
        self.index += 1;
        let defect = self.pick_defect();
        let mut line = Vec::with_capacity(self.capacity);
        let marks = match self.pipeline {
            Pipeline::Rss => self.rss(i, defect, &mut line),
            Pipeline::Polymarket => self.price(i, defect, &mut line),
        };
        match defect {
            Defect::MalformedJson => {
                // Keep at least the id (so the line stays unique and
                // traceable), drop at least the closing brace, and cut on a
                // character boundary (so it is malformed, not invalid UTF-8).
                let mut cut = self.rng.random_range(marks.id_end..line.len());
                while cut > marks.id_end && line.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            Defect::InvalidUtf8 => {
                // Text from a producer that used Latin-1 / Windows-1252 or
                // CESU-8, placed before the first space of the title or
                // question (a character boundary, so the bytes are invalid
                // right where they start).
                const BAD: [&[u8]; 5] = [b"\xE9", b"\x96", b"\xFF", b"\xC3", b"\xED\xA0\xBD"];
                let bad = BAD[self.rng.random_range(0..BAD.len())];
                let (start, end) = marks.text;
                let at = line
                    .get(start..end)
                    .and_then(|text| text.iter().position(|&b| b == b' '))
                    .map_or(start, |p| start + p);
                line.splice(at..at, bad.iter().copied());
            }
            Defect::NotAnObject => {
                let mut encoded = Vec::with_capacity(line.len() + line.len() / 4 + 2);
                encoded.push(b'"');
                push_json_escaped(&mut encoded, &line);
                encoded.push(b'"');
                line = encoded;
            }
            _ => {}
        }
        self.capacity = self.capacity.max(line.len());
        Some(GeneratedRecord {
            line,
            expected: defect.expected(self.pipeline),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.records - self.index;
        let lower = usize::try_from(left).unwrap_or(usize::MAX);
        (lower, usize::try_from(left).ok())
    }
}

/// Writes the fields after the id, applying the record's one field edit.
struct FieldWriter<'a> {
    out: &'a mut Vec<u8>,
    target: usize,
    edit: Edit,
    raw: &'a [u8],
}

impl FieldWriter<'_> {
    fn field(&mut self, index: usize, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
        let edit = if index == self.target {
            self.edit
        } else {
            Edit::Keep
        };
        if edit == Edit::Drop {
            return;
        }
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        match edit {
            Edit::Null => self.out.extend_from_slice(b"null"),
            Edit::Raw => self.out.extend_from_slice(self.raw),
            Edit::Keep | Edit::Drop => value(self.out),
        }
    }
}

/// `section/slug-xxxxxxxx` (the low 32 bits of the id in hex).
fn push_link_path(out: &mut Vec<u8>, section: &str, slug: &str, id: u64) {
    out.extend_from_slice(section.as_bytes());
    out.push(b'/');
    out.extend_from_slice(slug.as_bytes());
    out.push(b'-');
    push_hex(out, id, 8);
}

/// The low `digits` hex digits of `v`, lower case.
fn push_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (4 * k)) & 0xF) as usize]);
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Three fraction digits of `milli` (1..=999) without trailing zeros.
fn push_frac3(out: &mut Vec<u8>, milli: u64) {
    let digits = [milli / 100 % 10, milli / 10 % 10, milli % 10];
    let keep = if digits[2] != 0 {
        3
    } else if digits[1] != 0 {
        2
    } else {
        1
    };
    out.extend(digits[..keep].iter().map(|d| b'0' + *d as u8));
}

/// `0.xyz` for `milli` in 1..=999.
fn push_price(out: &mut Vec<u8>, milli: u64) {
    out.extend_from_slice(b"0.");
    push_frac3(out, milli);
}

/// `units.cc` from cents.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    push_2(out, (cents % 100) as u32);
}

/// A JSON string literal of `s`.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// The bytes escaped for a JSON string (quotes not included). Bytes of
/// multi-byte UTF-8 characters are copied as they are.
fn push_json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xF)]);
        } else {
            out.extend_from_slice(escape);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count from 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// (year, month, day, hour, minute, second) of Unix seconds.
fn split_secs(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `YYYY-MM-DD?HH:MM:SS` with `sep` between date and time.
fn push_datetime(out: &mut Vec<u8>, secs: i64, sep: u8) {
    let (y, m, d, hh, mm, ss) = split_secs(secs);
    push_2(out, (y / 100) as u32);
    push_2(out, (y % 100) as u32);
    out.push(b'-');
    push_2(out, m);
    out.push(b'-');
    push_2(out, d);
    out.push(sep);
    push_2(out, hh);
    out.push(b':');
    push_2(out, mm);
    out.push(b':');
    push_2(out, ss);
}

/// RFC 2822, as RSS `pubDate` has it: `Sun, 01 Nov 2026 00:00:23 +0000`.
fn push_rfc2822(out: &mut Vec<u8>, secs: i64) {
    const DAYS: [&[u8]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (y, m, d, hh, mm, ss) = split_secs(secs);
    out.extend_from_slice(DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize]);
    out.extend_from_slice(b", ");
    push_2(out, d);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(m - 1) as usize % 12]);
    out.push(b' ');
    push_u64(out, y as u64);
    out.push(b' ');
    push_2(out, hh);
    out.push(b':');
    push_2(out, mm);
    out.push(b':');
    push_2(out, ss);
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, validate};
    use chrono::{DateTime, Utc};

    #[test]
    fn calendar_matches_chrono() {
        for secs in [
            0i64,
            BASE_SECS,
            BASE_SECS + 86_399,
            951_782_400,
            4_107_542_400,
            BASE_SECS + CYCLE_SECS as i64 - 1,
        ] {
            let mut out = Vec::new();
            push_datetime(&mut out, secs, b'T');
            let ours = String::from_utf8(out).unwrap();
            let theirs = DateTime::<Utc>::from_timestamp(secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
            assert_eq!(ours, theirs);
            let mut out = Vec::new();
            push_rfc2822(&mut out, secs);
            let ours = String::from_utf8(out).unwrap();
            let back = DateTime::parse_from_rfc2822(&ours).unwrap();
            assert_eq!(back.timestamp(), secs, "{ours}");
        }
        assert_eq!(BASE_SECS, 1_793_491_200);
    }

    #[test]
    fn number_formatting() {
        let s = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(s(&|o| push_price(o, 420)), "0.42");
        assert_eq!(s(&|o| push_price(o, 5)), "0.005");
        assert_eq!(s(&|o| push_price(o, 999)), "0.999");
        assert_eq!(s(&|o| push_cents(o, 123_405)), "1234.05");
        assert_eq!(s(&|o| push_u64(o, 0)), "0");
        assert_eq!(s(&|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(
            s(&|o| push_json_str(o, "a\"b\\c\n\u{1}é")),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
    }

    /// Every defect the generator makes hits the field and class the
    /// validator reports; the public test checks the class, this one also
    /// checks that fixable defects name the field their fix is listed for.
    #[test]
    fn fixable_defects_match_the_fix_table() {
        for pipeline in Pipeline::ALL {
            let config = GeneratorConfig {
                mix: FailureMix {
                    wrong_type: 0.3,
                    timestamp_not_hour_aligned: 0.3,
                    not_an_object: 0.3,
                    ..FailureMix::none()
                },
                ..GeneratorConfig::new(pipeline, 3_000, 11)
            };
            let mut fixable = 0;
            for record in generate(&config) {
                let Expected::Invalid {
                    class,
                    fixable_by: Some(fix),
                } = record.expected
                else {
                    continue;
                };
                fixable += 1;
                let err = validate(pipeline, &record.line, &Limits::default()).unwrap_err();
                assert_eq!(err.class, class);
                let field = err.field.as_deref().unwrap_or("");
                assert!(
                    fixes(pipeline).contains(&(class, field, fix)),
                    "{pipeline}: ({class}, {field}, {fix}) not in fixes()"
                );
            }
            assert!(fixable > 1_000, "{pipeline}: {fixable}");
        }
    }

    #[test]
    fn check_reports_every_problem() {
        assert_eq!(FailureMix::default().check(), Ok(()));
        assert_eq!(FailureMix::none().check(), Ok(()));
        let bad = FailureMix {
            malformed_json: f64::NAN,
            bad_url: 1.5,
            wrong_type: 0.9,
            ..FailureMix::default()
        };
        let err = bad.check().unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("malformed_json is NaN"), "{err}");
        assert!(err.to_string().contains("sum to"), "{err}");
    }

    #[test]
    fn default_totals() {
        let mix = FailureMix::default();
        assert!((mix.total(Pipeline::Rss) - 0.053).abs() < 1e-9);
        assert!((mix.total(Pipeline::Polymarket) - 0.062).abs() < 1e-9);
        assert_eq!(FailureMix::none().total(Pipeline::Rss), 0.0);
    }

    #[test]
    fn clamped_mix_still_generates_agreeing_lines() {
        let config = GeneratorConfig {
            mix: FailureMix {
                malformed_json: f64::NAN,
                bad_market_id: 3.0,
                ..FailureMix::default()
            },
            ..GeneratorConfig::new(Pipeline::Polymarket, 500, 1)
        };
        for record in generate(&config) {
            let verdict = validate(Pipeline::Polymarket, &record.line, &Limits::default());
            match record.expected {
                Expected::Valid => panic!("a mix summing past 1 leaves no valid records"),
                Expected::Invalid { class, .. } => assert_eq!(verdict.unwrap_err().class, class),
            }
        }
    }

    #[test]
    fn config_parses() {
        let config: GeneratorConfig = serde_json::from_str(
            r#"{"pipeline":"polymarket","records":10,"mix":{"wrong_type":0.5}}"#,
        )
        .unwrap();
        assert_eq!(config.seed, 0);
        assert_eq!(config.mix.wrong_type, 0.5);
        assert_eq!(
            config.mix.malformed_json,
            FailureMix::default().malformed_json
        );
        assert!(
            serde_json::from_str::<GeneratorConfig>(r#"{"pipeline":"rss","records":1,"mixx":{}}"#)
                .is_err()
        );
        assert_eq!(generate(&config).count(), 10);
        assert_eq!(generate(&config).size_hint(), (10, Some(10)));
    }
}
