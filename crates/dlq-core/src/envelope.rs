//! The DLQ record format: the v1 JSON envelope, and how foreign records decode.
//!
//! A [`DeadLetter`] is the in-memory form of one failed record: the original
//! bytes (payload, key, headers), where it came from, and why it failed. On the
//! wire it is the v1 envelope of DESIGN.md, a superset of the seed format
//! `{original_record, error, timestamp}` so that consumers reading
//! `record["error"]` keep working.
//!
//! The invariants this module is built around:
//!
//! * **Byte-exact.** `decode(encode(r))` gives back `r`'s payload, key and
//!   headers byte for byte. A JSON payload is embedded verbatim (never
//!   re-serialized); other UTF-8 becomes a JSON string; anything else is
//!   `{"base64": …}`. A JSON payload that contains a raw line break (only
//!   possible as whitespace between tokens) is written as a string instead, so
//!   that an envelope is always one NDJSON line.
//! * **Bounded.** [`encode`] never returns more than
//!   [`EncodeOptions::max_bytes`]: long error texts are cut with a marker, and
//!   oversized parts go to claim-check [`Blob`]s that the store keeps beside
//!   the envelope, referenced by SHA-256.
//! * **Tolerant decode.** [`decode`] never fails and never panics: a v1
//!   envelope, a seed envelope or any other bytes (a raw record) all become a
//!   `DeadLetter`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Envelope format version written by this crate.
pub const ENVELOPE_VERSION: u32 = 1;

/// Error class given to bytes that are not an envelope at all.
pub const UNKNOWN_ERROR_CLASS: &str = "unknown";

/// One header of the original record. Kafka header values may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name. Kafka header names are bytes; one that is not UTF-8 is
    /// held as a NUL followed by the base64 of its bytes (see
    /// [`Header::from_name_bytes`] and [`Header::name_bytes`]). librdkafka
    /// cannot carry a NUL in a header name, so no name read from Kafka
    /// starts with one, and UTF-8 names (all names in practice) are held
    /// as they are.
    pub name: String,
    /// Header value, exactly as received; `None` for a null value.
    pub value: Option<Vec<u8>>,
}

/// Starts a header name that is held as base64 (see [`Header::name`]).
const NAME_BASE64_MARK: char = '\0';

impl Header {
    /// A header whose name is given as bytes, whether UTF-8 or not.
    pub fn from_name_bytes(name: &[u8], value: Option<Vec<u8>>) -> Header {
        let name = match std::str::from_utf8(name) {
            Ok(text) if !text.starts_with(NAME_BASE64_MARK) => text.to_owned(),
            _ => format!("{NAME_BASE64_MARK}{}", BASE64.encode(name)),
        };
        Header { name, value }
    }

    /// The name's bytes, exactly as the record carried them.
    pub fn name_bytes(&self) -> Cow<'_, [u8]> {
        match self.name_base64() {
            Some(encoded) => match BASE64.decode(encoded) {
                Ok(bytes) => Cow::Owned(bytes),
                Err(_) => Cow::Borrowed(self.name.as_bytes()),
            },
            None => Cow::Borrowed(self.name.as_bytes()),
        }
    }

    /// The base64 of a name held as base64.
    fn name_base64(&self) -> Option<&str> {
        self.name.strip_prefix(NAME_BASE64_MARK)
    }
}

/// Where the failed record came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The kind of source: `kafka`, `file`, `stdin`, or `unknown`.
    pub system: String,
    /// The topic the record was read from or meant for (replays go back here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The source partition, where the source has partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The source offset (for files: the 0-based line number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The source record's own timestamp, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
}

/// The format a dead letter was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A dlq v1 envelope.
    Envelope,
    /// The seed format `{original_record, error, timestamp}`.
    Seed,
    /// Not an envelope: the bytes are the payload.
    Raw,
    /// A Kafka Connect DLQ record (`__connect.errors.*` headers).
    Connect,
    /// A Spring Kafka dead-letter record (`kafka_dlt-*` headers).
    Spring,
    /// dlq's headers format: the raw value, metadata in `dlq.*` headers.
    Headers,
}

impl Origin {
    /// The name used in envelopes, filters and reports (`envelope`, `seed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Envelope => "envelope",
            Origin::Seed => "seed",
            Origin::Raw => "raw",
            Origin::Connect => "connect",
            Origin::Spring => "spring",
            Origin::Headers => "headers",
        }
    }
}

/// Which part of a record a claim check stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The record value.
    Payload,
    /// The record key.
    Key,
    /// The record headers (the blob holds them JSON-encoded as in the envelope).
    Headers,
}

/// A pointer to a part of a record stored outside the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheck {
    /// The part of the record held by the blob.
    pub part: Part,
    /// Hex SHA-256 of the blob.
    pub sha256: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Where the store keeps the blob (`sha256:<hex>` for content-addressed stores).
    pub pointer: String,
}

/// A blob produced by [`encode`] that the store must persist before the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The blob content.
    pub bytes: Vec<u8>,
}

/// One failed record, with its original bytes and its failure metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Deterministic identity: `kafka:<topic>:<partition>:<offset>` for Kafka
    /// records, `file:<input>:<line>` for file inputs, a UUIDv7 otherwise.
    pub id: String,
    /// The original record value, byte for byte (empty while claim-checked,
    /// and for a null value: see `null_payload`).
    pub payload: Vec<u8>,
    /// The original record had no value at all (a Kafka tombstone), which
    /// is not the same as an empty one: `payload` is empty and a replay
    /// sends a null value.
    pub null_payload: bool,
    /// The original record key.
    pub key: Option<Vec<u8>>,
    /// The original record headers.
    pub headers: Vec<Header>,
    /// Where the record came from.
    pub source: Source,
    /// The processing stage that failed (e.g. `validate`, `produce`).
    pub stage: String,
    /// A stable, dotted error class (e.g. `validation.price_out_of_range`).
    pub error_class: String,
    /// The human-readable error of the last failure.
    pub error: String,
    /// Whether a later attempt could succeed (transient) or not (permanent).
    pub retryable: bool,
    /// How many attempts were made before giving up.
    pub attempts: u32,
    /// When the last failure happened (the envelope's `timestamp`).
    pub failed_at: DateTime<Utc>,
    /// When the record first failed; kept across replays.
    pub first_failed_at: DateTime<Utc>,
    /// How many times the record was replayed and failed again.
    pub replays: u32,
    /// The id of the dead letter this one is a failed replay of.
    pub replay_of: Option<String>,
    /// Parts of the record stored outside the envelope.
    pub claim_checks: Vec<ClaimCheck>,
    /// Original length of the error text, when it was cut to fit the limit.
    pub error_truncated_from: Option<u64>,
    /// The format this dead letter was decoded from.
    pub origin: Origin,
}

impl DeadLetter {
    /// A new dead letter for a record that failed now, with everything else
    /// defaulted: set the fields that apply.
    pub fn new(id: impl Into<String>, payload: Vec<u8>, failure: &crate::Failure) -> Self {
        let now = now_millis();
        DeadLetter {
            id: id.into(),
            payload,
            null_payload: false,
            key: None,
            headers: Vec::new(),
            source: Source {
                system: "unknown".into(),
                ..Source::default()
            },
            stage: failure.stage.clone(),
            error_class: failure.error_class.clone(),
            error: failure.message.clone(),
            retryable: failure.retryable,
            attempts: 1,
            failed_at: now,
            first_failed_at: now,
            replays: 0,
            replay_of: None,
            claim_checks: Vec::new(),
            error_truncated_from: None,
            origin: Origin::Envelope,
        }
    }

    /// The dead letter that a failed replay of `self` becomes: the new error
    /// replaces the old one (error metadata never grows), `first_failed_at`
    /// is kept, `replays` goes up by one, and the id is derived from this one
    /// so that a retried write is deduplicated by the store.
    pub fn refailed(&self, payload: Vec<u8>, failure: &crate::Failure) -> DeadLetter {
        let replays = self.replays + 1;
        let root = self.replay_of.as_deref().unwrap_or(&self.id);
        let root = root.split("~r").next().unwrap_or(root);
        DeadLetter {
            id: format!("{root}~r{replays}"),
            payload,
            null_payload: false,
            key: self.key.clone(),
            headers: self.headers.clone(),
            source: self.source.clone(),
            stage: failure.stage.clone(),
            error_class: failure.error_class.clone(),
            error: failure.message.clone(),
            retryable: failure.retryable,
            attempts: 1,
            failed_at: now_millis(),
            first_failed_at: self.first_failed_at,
            replays,
            replay_of: Some(self.id.clone()),
            claim_checks: Vec::new(),
            error_truncated_from: None,
            origin: Origin::Envelope,
        }
    }

    /// True when some part of the record lives in a claim-check blob.
    pub fn has_claim_checks(&self) -> bool {
        !self.claim_checks.is_empty()
    }

    /// Restores claim-checked parts by fetching their blobs; each blob's
    /// SHA-256 is verified, so a corrupt or wrong blob is an error, never a
    /// silently different record.
    pub fn resolve_claims<F>(&mut self, mut fetch: F) -> Result<(), ClaimError>
    where
        F: FnMut(&ClaimCheck) -> Result<Option<Vec<u8>>, ClaimError>,
    {
        for claim in std::mem::take(&mut self.claim_checks) {
            let bytes = fetch(&claim)?.ok_or_else(|| ClaimError::Missing {
                pointer: claim.pointer.clone(),
            })?;
            let actual = sha256_hex(&bytes);
            if actual != claim.sha256 {
                return Err(ClaimError::Corrupt {
                    pointer: claim.pointer.clone(),
                    expected: claim.sha256.clone(),
                    actual,
                });
            }
            match claim.part {
                Part::Payload => self.payload = bytes,
                Part::Key => self.key = Some(bytes),
                Part::Headers => {
                    let corrupt = |actual: String| ClaimError::Corrupt {
                        pointer: claim.pointer.clone(),
                        expected: "a JSON header list".into(),
                        actual,
                    };
                    let wire: Vec<WireHeader> =
                        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                    self.headers = headers_from_wire(wire)
                        .ok_or_else(|| corrupt("a header that is not valid base64".into()))?;
                }
            }
        }
        Ok(())
    }
}

/// Now, to the millisecond: dlq's own failure times carry the precision
/// of Kafka timestamps, so that they print as they always did.
fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A claim-check blob could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// The store has no blob at the pointer.
    #[error("claim-check blob {pointer} is missing from the store")]
    Missing {
        /// The blob pointer.
        pointer: String,
    },
    /// The blob's content does not match its SHA-256.
    #[error("claim-check blob {pointer} is corrupt: expected {expected}, got {actual}")]
    Corrupt {
        /// The blob pointer.
        pointer: String,
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },
    /// The store failed while reading the blob.
    #[error("reading claim-check blob {pointer}: {message}")]
    Store {
        /// The blob pointer.
        pointer: String,
        /// The store's error.
        message: String,
    },
}

/// Options for [`encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The largest envelope the store accepts, in bytes.
    pub max_bytes: usize,
    /// Error texts longer than this are cut with a marker even when they fit.
    pub max_error_bytes: usize,
}

impl EncodeOptions {
    /// The smallest `max_bytes` that is guaranteed to hold the fixed fields.
    pub const MIN_MAX_BYTES: usize = 4096;

    /// Options with the given envelope size limit.
    pub fn with_max_bytes(max_bytes: usize) -> Result<Self, EncodeError> {
        if max_bytes < Self::MIN_MAX_BYTES {
            return Err(EncodeError::LimitTooSmall {
                limit: max_bytes,
                min: Self::MIN_MAX_BYTES,
            });
        }
        Ok(EncodeOptions {
            max_bytes,
            ..EncodeOptions::default()
        })
    }

    /// No size limit: every part inline (used by `export`).
    pub const fn unlimited() -> Self {
        EncodeOptions {
            max_bytes: usize::MAX,
            max_error_bytes: usize::MAX,
        }
    }
}

impl Default for EncodeOptions {
    /// 1 MiB, Kafka's default `max.message.bytes` (rounded) and SQS's limit;
    /// errors cut at 64 KiB, which keeps a long stack trace readable.
    fn default() -> Self {
        EncodeOptions {
            max_bytes: 1024 * 1024,
            max_error_bytes: 64 * 1024,
        }
    }
}

/// An envelope could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The configured limit is below what the fixed fields can need.
    #[error("envelope size limit {limit} is below the minimum of {min} bytes")]
    LimitTooSmall {
        /// The configured limit.
        limit: usize,
        /// The minimum.
        min: usize,
    },
}

/// An encoded envelope and the blobs it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The envelope, one line of JSON.
    pub bytes: Vec<u8>,
    /// Claim-check blobs the store must persist with the envelope.
    pub blobs: Vec<Blob>,
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The pointer a content-addressed store uses for a blob.
pub fn blob_pointer(sha256: &str) -> String {
    format!("sha256:{sha256}")
}

/// Marker appended to a cut error text.
fn truncation_marker(original_len: usize) -> String {
    format!(" …[truncated, {original_len} bytes in all]")
}

/// Cuts `text` to at most `budget` bytes including the marker, on a char boundary.
fn cut_text(text: &str, budget: usize) -> String {
    let marker = truncation_marker(text.len());
    if text.len() <= budget {
        return text.to_owned();
    }
    let mut end = budget.saturating_sub(marker.len()).min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &text[..end], marker)
}

/// Encodes a dead letter as a v1 envelope of at most `opts.max_bytes` bytes.
///
/// Parts that are already claim-checked in `letter` stay claim-checked. The
/// order of measures when the envelope is too large: cut the error text to
/// `max_error_bytes`; claim-check the payload, then the headers, then the
/// key; finally cut the error text (and, for absurd inputs, the stage and
/// error class) further.
pub fn encode(letter: &DeadLetter, opts: &EncodeOptions) -> Result<Encoded, EncodeError> {
    let mut plan = Plan {
        claim_payload: false,
        claim_headers: false,
        claim_key: false,
        error: Cow::Borrowed(letter.error.as_str()),
        stage: Cow::Borrowed(letter.stage.as_str()),
        error_class: Cow::Borrowed(letter.error_class.as_str()),
    };
    if plan.error.len() > opts.max_error_bytes {
        plan.error = Cow::Owned(cut_text(&letter.error, opts.max_error_bytes));
    }
    // A payload larger than the whole limit can never be inlined: go
    // straight to its claim check instead of rendering it first.
    if letter.payload.len() > opts.max_bytes {
        plan.claim_payload = true;
    }
    let mut out = render(letter, &plan);
    if out.bytes.len() <= opts.max_bytes {
        return Ok(out);
    }
    if opts.max_bytes < EncodeOptions::MIN_MAX_BYTES {
        return Err(EncodeError::LimitTooSmall {
            limit: opts.max_bytes,
            min: EncodeOptions::MIN_MAX_BYTES,
        });
    }
    for step in 0..3 {
        match step {
            0 if !letter.payload.is_empty() => plan.claim_payload = true,
            1 if !letter.headers.is_empty() => plan.claim_headers = true,
            2 if letter.key.as_ref().is_some_and(|k| !k.is_empty()) => plan.claim_key = true,
            _ => continue,
        }
        out = render(letter, &plan);
        if out.bytes.len() <= opts.max_bytes {
            return Ok(out);
        }
    }
    // Only metadata text is left to shrink. Everything else is bounded
    // (ids, topic, timestamps, numbers), so cutting these always fits once
    // they are short enough; each round removes at least the excess.
    const SMALL: usize = 256;
    if plan.stage.len() > SMALL {
        plan.stage = Cow::Owned(cut_text(&letter.stage, SMALL));
    }
    if plan.error_class.len() > SMALL {
        plan.error_class = Cow::Owned(cut_text(&letter.error_class, SMALL));
    }
    loop {
        out = render(letter, &plan);
        let excess = out.bytes.len().saturating_sub(opts.max_bytes);
        if excess == 0 {
            return Ok(out);
        }
        let current = plan.error.len();
        if current == 0 {
            // The fixed fields alone exceed the limit: an id or topic of
            // absurd length. Refuse rather than write something larger.
            return Err(EncodeError::LimitTooSmall {
                limit: opts.max_bytes,
                min: out.bytes.len(),
            });
        }
        // JSON escaping can make the text grow up to 6x; aim below the budget.
        let budget = current.saturating_sub(excess.max(64));
        plan.error = Cow::Owned(if budget < 64 {
            String::new()
        } else {
            cut_text(&letter.error, budget)
        });
    }
}

struct Plan<'a> {
    claim_payload: bool,
    claim_headers: bool,
    claim_key: bool,
    error: Cow<'a, str>,
    stage: Cow<'a, str>,
    error_class: Cow<'a, str>,
}

/// How bytes are written in JSON: as text where they are UTF-8, else base64.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WireBytes<'a> {
    Text(Cow<'a, str>),
    Base64 { base64: Cow<'a, str> },
}

impl<'a> WireBytes<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => WireBytes::Text(Cow::Borrowed(s)),
            Err(_) => WireBytes::Base64 {
                base64: Cow::Owned(BASE64.encode(bytes)),
            },
        }
    }

    fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            WireBytes::Text(s) => Some(s.into_owned().into_bytes()),
            WireBytes::Base64 { base64 } => BASE64.decode(base64.as_bytes()).ok(),
        }
    }
}

/// A header on the wire: `[name, value]`, the name a string, or
/// `{"base64": …}` when it is not UTF-8.
#[derive(Serialize, Deserialize)]
struct WireHeader<'a>(
    #[serde(borrow)] WireBytes<'a>,
    #[serde(borrow)] Option<WireBytes<'a>>,
);

impl WireHeader<'_> {
    fn into_header(self) -> Option<Header> {
        let value = match self.1 {
            Some(v) => Some(v.into_bytes()?),
            None => None,
        };
        Some(match self.0 {
            WireBytes::Text(name) => Header::from_name_bytes(name.as_bytes(), value),
            base64 => Header::from_name_bytes(&base64.into_bytes()?, value),
        })
    }
}

fn wire_headers(headers: &[Header]) -> Vec<WireHeader<'_>> {
    headers
        .iter()
        .map(|h| {
            let name = match h.name_base64() {
                Some(b) if BASE64.decode(b).is_ok() => WireBytes::Base64 {
                    base64: Cow::Borrowed(b),
                },
                Some(_) => WireBytes::Base64 {
                    base64: Cow::Owned(BASE64.encode(h.name.as_bytes())),
                },
                None => WireBytes::Text(Cow::Borrowed(h.name.as_str())),
            };
            WireHeader(name, h.value.as_deref().map(WireBytes::of))
        })
        .collect()
}

/// Headers from their wire form; `None` if one of them is malformed.
fn headers_from_wire(wire: Vec<WireHeader<'_>>) -> Option<Vec<Header>> {
    wire.into_iter().map(WireHeader::into_header).collect()
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireOriginal<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    Base64 { base64: String },
    Null(Option<()>),
}

#[derive(Serialize)]
struct WireEnvelopeOut<'a> {
    original_record: WireOriginal<'a>,
    error: &'a str,
    timestamp: String,
    dlq: WireMetaOut<'a>,
}

#[derive(Serialize)]
struct WireMetaOut<'a> {
    v: u32,
    id: &'a str,
    source: &'a Source,
    key: Option<WireBytes<'a>>,
    headers: Vec<WireHeader<'a>>,
    stage: &'a str,
    error_class: &'a str,
    retryable: bool,
    attempts: u32,
    first_failed_at: String,
    replays: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_of: Option<&'a str>,
    payload_encoding: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    claim_checks: Vec<ClaimCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_truncated_from: Option<u64>,
    #[serde(skip_serializing_if = "is_envelope")]
    origin: Origin,
}

fn is_envelope(origin: &Origin) -> bool {
    *origin == Origin::Envelope
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    format_timestamp(t)
}

/// Formats a timestamp as envelopes and lineage headers write it: RFC 3339
/// in UTC, with milliseconds, or with as many more digits as it carries
/// (a seed writer's microseconds are kept as written).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    // A leap second shows as nanoseconds past 1e9.
    let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
    let digits = if nanos.is_multiple_of(1_000_000) {
        SecondsFormat::Millis
    } else if nanos.is_multiple_of(1_000) {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Nanos
    };
    t.to_rfc3339_opts(digits, true)
}

/// The payload as embeddable JSON, when it can be embedded verbatim.
fn json_payload(payload: &[u8]) -> Option<&RawValue> {
    // A raw line break can only be whitespace between JSON tokens; embedding
    // it would split the envelope across NDJSON lines, so such payloads are
    // written as strings (still byte-exact).
    if payload.is_empty() || payload.iter().any(|&b| b == b'\n' || b == b'\r') {
        return None;
    }
    let raw: &RawValue = serde_json::from_slice(payload).ok()?;
    // RawValue drops surrounding whitespace; only embed when nothing is lost.
    (raw.get().len() == payload.len()).then_some(raw)
}

fn claim(part: Part, bytes: Vec<u8>, blobs: &mut Vec<Blob>) -> ClaimCheck {
    let sha256 = sha256_hex(&bytes);
    let check = ClaimCheck {
        part,
        size: bytes.len() as u64,
        pointer: blob_pointer(&sha256),
        sha256: sha256.clone(),
    };
    blobs.push(Blob { sha256, bytes });
    check
}

fn render(letter: &DeadLetter, plan: &Plan<'_>) -> Encoded {
    let mut blobs = Vec::new();
    let mut claim_checks = letter.claim_checks.clone();
    let already = |part: Part| letter.claim_checks.iter().any(|c| c.part == part);

    let (original, encoding) = if plan.claim_payload || already(Part::Payload) {
        if plan.claim_payload && !already(Part::Payload) {
            claim_checks.push(claim(Part::Payload, letter.payload.clone(), &mut blobs));
        }
        (WireOriginal::Null(None), "claim_check")
    } else if letter.null_payload {
        (WireOriginal::Null(None), "null")
    } else if let Some(raw) = json_payload(&letter.payload) {
        (WireOriginal::Json(raw), "json")
    } else if let Ok(text) = std::str::from_utf8(&letter.payload) {
        (WireOriginal::Text(text), "text")
    } else {
        (
            WireOriginal::Base64 {
                base64: BASE64.encode(&letter.payload),
            },
            "base64",
        )
    };

    let headers = if plan.claim_headers && !already(Part::Headers) {
        let json = serde_json::to_vec(&wire_headers(&letter.headers)).unwrap_or_default();
        claim_checks.push(claim(Part::Headers, json, &mut blobs));
        Vec::new()
    } else if already(Part::Headers) {
        Vec::new()
    } else {
        wire_headers(&letter.headers)
    };

    let key = if plan.claim_key && !already(Part::Key) {
        let bytes = letter.key.clone().unwrap_or_default();
        claim_checks.push(claim(Part::Key, bytes, &mut blobs));
        None
    } else if already(Part::Key) {
        None
    } else {
        letter.key.as_deref().map(WireBytes::of)
    };

    let cut = plan.error.len() != letter.error.len();
    let envelope = WireEnvelopeOut {
        original_record: original,
        error: &plan.error,
        timestamp: rfc3339(&letter.failed_at),
        dlq: WireMetaOut {
            v: ENVELOPE_VERSION,
            id: &letter.id,
            source: &letter.source,
            key,
            headers,
            stage: &plan.stage,
            error_class: &plan.error_class,
            retryable: letter.retryable,
            attempts: letter.attempts,
            first_failed_at: rfc3339(&letter.first_failed_at),
            replays: letter.replays,
            replay_of: letter.replay_of.as_deref(),
            payload_encoding: encoding,
            claim_checks,
            error_truncated_from: if cut {
                Some(letter.error.len() as u64)
            } else {
                letter.error_truncated_from
            },
            origin: letter.origin,
        },
    };
    // Serializing these types cannot fail: all maps have string keys and
    // the raw payload was validated as JSON.
    let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
    Encoded { bytes, blobs }
}

/// The top-level members of an envelope, each as it was written (a member
/// written as `null` is `Some("null")`, one left out is `None`).
#[derive(Deserialize)]
struct WireEnvelopeIn<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    original_record: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    dlq: Option<&'a RawValue>,
}

/// A member that is there, whatever its value (`null` included).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// A member that must be there, though its value may be `null`.
fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// The `dlq` member of a v1 envelope. Every field [`encode`] always
/// writes is required: an object that lacks one is not an envelope but a
/// raw record that happens to look like one.
#[derive(Deserialize)]
struct WireMetaIn<'a> {
    v: u32,
    id: String,
    source: Source,
    #[serde(borrow, deserialize_with = "required")]
    key: Option<WireBytes<'a>>,
    #[serde(borrow)]
    headers: Vec<WireHeader<'a>>,
    stage: String,
    error_class: String,
    retryable: bool,
    attempts: u32,
    first_failed_at: String,
    replays: u32,
    #[serde(default)]
    replay_of: Option<String>,
    payload_encoding: String,
    #[serde(default)]
    claim_checks: Vec<ClaimCheck>,
    #[serde(default)]
    error_truncated_from: Option<u64>,
    #[serde(default)]
    origin: Option<Origin>,
}

/// Parses the timestamps that DLQ writers use: RFC 3339 (Python's
/// `isoformat()` included), with or without a zone (UTC assumed).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Decodes any bytes read from a DLQ into a dead letter. Never fails.
///
/// * a v1 envelope (an object with a `dlq` member) decodes field by field
///   when it is complete and valid: every field the encoder writes is
///   there with its type, `dlq.v` is 1, the timestamps parse and the
///   payload matches its `payload_encoding`;
/// * a seed envelope (an object with `original_record` and a string
///   `error`, and no `dlq` member) keeps its error text and timestamp, and
///   its `original_record` becomes the payload (a JSON string's content,
///   any other JSON verbatim);
/// * anything else is a raw record — an object that looks like an
///   envelope but is not a complete one included: its bytes are the
///   payload, untouched, with the error class [`UNKNOWN_ERROR_CLASS`].
///
/// `fallback_id` names records that carry no id of their own.
pub fn decode(bytes: &[u8], fallback_id: &str) -> DeadLetter {
    decode_at(bytes, fallback_id, None)
}

/// [`decode`], with `at` as the failure time of records that do not say
/// when they failed (raw records, seed records without a timestamp): the
/// time the writer stored them, where the DLQ knows it.
fn decode_at(bytes: &[u8], fallback_id: &str, at: Option<DateTime<Utc>>) -> DeadLetter {
    let mut letter =
        decode_envelope(bytes, fallback_id, at).unwrap_or_else(|| raw_letter(bytes, fallback_id));
    if letter.origin == Origin::Raw
        && let Some(t) = at
    {
        letter.failed_at = t;
        letter.first_failed_at = t;
    }
    letter
}

/// The envelope (v1 or seed) `bytes` are, if they are one.
fn decode_envelope(
    bytes: &[u8],
    fallback_id: &str,
    at: Option<DateTime<Utc>>,
) -> Option<DeadLetter> {
    // Only an object can be an envelope; most raw records are not one.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let wire = serde_json::from_slice::<WireEnvelopeIn<'_>>(bytes).ok()?;
    match wire.dlq {
        Some(meta) => {
            let meta: WireMetaIn<'_> = serde_json::from_str(meta.get()).ok()?;
            if meta.v != ENVELOPE_VERSION {
                return None;
            }
            decode_v1(wire.original_record?, wire.error?, wire.timestamp?, meta)
        }
        None => {
            let mut letter = decode_seed(
                wire.original_record?,
                wire.error?,
                wire.timestamp,
                fallback_id,
            )?;
            if let Some(t) = at.filter(|_| wire.timestamp.is_none_or(|t| t.get() == "null")) {
                letter.failed_at = t;
                letter.first_failed_at = t;
            }
            Some(letter)
        }
    }
}

fn raw_letter(bytes: &[u8], fallback_id: &str) -> DeadLetter {
    let failure = crate::Failure::permanent(
        "unknown",
        UNKNOWN_ERROR_CLASS,
        "record is not a DLQ envelope; its bytes are kept as the payload",
    );
    let mut letter = DeadLetter::new(fallback_id, bytes.to_vec(), &failure);
    letter.attempts = 0;
    letter.origin = Origin::Raw;
    letter
}

/// A JSON string's text.
fn json_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

fn decode_seed(
    original: &RawValue,
    error: &RawValue,
    timestamp: Option<&RawValue>,
    fallback_id: &str,
) -> Option<DeadLetter> {
    let error = json_string(error)?;
    // A timestamp, when there is one, must be one.
    let timestamp = match timestamp.filter(|t| t.get() != "null") {
        Some(t) => Some(parse_timestamp(&json_string(t)?)?),
        None => None,
    };
    let payload = match json_string(original) {
        Some(text) => text.into_bytes(),
        None => original.get().as_bytes().to_vec(),
    };
    let failure = crate::Failure::permanent("unknown", UNKNOWN_ERROR_CLASS, error);
    let mut letter = DeadLetter::new(fallback_id, payload, &failure);
    // The seed format does not say whether a retry could help.
    letter.retryable = false;
    letter.attempts = 0;
    if let Some(t) = timestamp {
        letter.failed_at = t;
        letter.first_failed_at = t;
    }
    letter.origin = Origin::Seed;
    Some(letter)
}

fn decode_v1(
    original: &RawValue,
    error: &RawValue,
    timestamp: &RawValue,
    meta: WireMetaIn<'_>,
) -> Option<DeadLetter> {
    let is_null = original.get() == "null";
    let claimed = meta.claim_checks.iter().any(|c| c.part == Part::Payload);
    let payload = match meta.payload_encoding.as_str() {
        "claim_check" if is_null && claimed => Vec::new(),
        "null" if is_null => Vec::new(),
        "json" => original.get().as_bytes().to_vec(),
        "text" => json_string(original)?.into_bytes(),
        "base64" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct B64 {
                base64: String,
            }
            let b: B64 = serde_json::from_str(original.get()).ok()?;
            BASE64.decode(b.base64.as_bytes()).ok()?
        }
        _ => return None,
    };
    let failed_at = parse_timestamp(&json_string(timestamp)?)?;
    let first_failed_at = parse_timestamp(&meta.first_failed_at)?;
    let key = match meta.key {
        Some(k) => Some(k.into_bytes()?),
        None => None,
    };
    Some(DeadLetter {
        id: meta.id,
        payload,
        null_payload: meta.payload_encoding == "null",
        key,
        headers: headers_from_wire(meta.headers)?,
        source: meta.source,
        stage: meta.stage,
        error_class: meta.error_class,
        error: json_string(error)?,
        retryable: meta.retryable,
        attempts: meta.attempts,
        failed_at,
        first_failed_at,
        replays: meta.replays,
        replay_of: meta.replay_of,
        claim_checks: meta.claim_checks,
        error_truncated_from: meta.error_truncated_from,
        origin: meta.origin.unwrap_or(Origin::Envelope),
    })
}

/// A record as read from a Kafka DLQ topic, before it is decoded.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// The DLQ record's value (`None` for a tombstone).
    pub value: Option<&'a [u8]>,
    /// The DLQ record's key.
    pub key: Option<&'a [u8]>,
    /// The DLQ record's headers.
    pub headers: &'a [Header],
    /// The DLQ topic.
    pub topic: &'a str,
    /// The DLQ partition.
    pub partition: i32,
    /// The DLQ offset.
    pub offset: i64,
    /// The DLQ record's timestamp.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Prefix of the metadata headers of dlq's headers format.
pub const HEADERS_PREFIX: &str = "dlq.";

/// Headers a replay sets on a record it sends back to a topic or queue, so
/// that a processor that fails it again returns it to its DLQ as the next
/// generation (parked past its replay limit instead of looping): the id of
/// the dead letter it replays.
pub const REPLAY_OF_HEADER: &str = "dlq.replay_of";
/// The replay count of a replayed record (see [`REPLAY_OF_HEADER`]).
pub const REPLAYS_HEADER: &str = "dlq.replays";
/// When a replayed record first failed (see [`REPLAY_OF_HEADER`]).
pub const FIRST_FAILED_AT_HEADER: &str = "dlq.first_failed_at";

fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .rev()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
}

fn header_text(headers: &[Header], name: &str) -> Option<String> {
    header(headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A numeric header: Spring writes big-endian binary ints and longs,
/// Connect writes decimal text; both are accepted.
fn header_int(headers: &[Header], name: &str) -> Option<i64> {
    let v = header(headers, name)?;
    if let Some(n) = std::str::from_utf8(v)
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        return Some(n);
    }
    match v.len() {
        4 => Some(i64::from(i32::from_be_bytes(v.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// Decodes a record read from a Kafka DLQ topic, whoever wrote it: dlq's
/// envelope or headers format, a Kafka Connect or Spring Kafka dead-letter
/// record, the seed envelope, or a raw record. Never fails.
///
/// Foreign records keep their value, key and original headers byte for
/// byte; their error metadata comes from the writer's headers, with the
/// original topic, partition and offset as the source (so a replay goes back
/// where the record came from). Records without an id of their own are
/// identified by their DLQ coordinates, `kafka:<topic>:<partition>:<offset>`.
pub fn decode_kafka(rec: &KafkaRecord<'_>) -> DeadLetter {
    decode_kafka_with_prefix(rec, DEFAULT_DLQ_PREFIX)
}

/// The DLQ topic prefix of a default configuration: `dlq.rss.events` is
/// the DLQ of `rss.events`.
pub const DEFAULT_DLQ_PREFIX: &str = "dlq.";

/// [`decode_kafka`] for a store whose DLQ topics are named with
/// `dlq_prefix`: a raw record of DLQ topic `<dlq_prefix><topic>` came from
/// `<topic>` (a replay sends it back there).
///
/// A null value (a tombstone) decodes with `null_payload` set, and a raw
/// record's failure time is the Kafka record's timestamp (when it was
/// dead-lettered), not the time it is read.
pub fn decode_kafka_with_prefix(rec: &KafkaRecord<'_>, dlq_prefix: &str) -> DeadLetter {
    let coords_id = format!("kafka:{}:{}:{}", rec.topic, rec.partition, rec.offset);
    let value = rec.value.unwrap_or_default();
    let foreign = if header(rec.headers, "__connect.errors.topic").is_some() {
        Some(Origin::Connect)
    } else if header(rec.headers, "kafka_dlt-original-topic").is_some() {
        Some(Origin::Spring)
    } else if header(rec.headers, "dlq.v").is_some() {
        Some(Origin::Headers)
    } else {
        None
    };
    let Some(origin) = foreign else {
        let mut letter = match rec.value {
            Some(v) => decode_at(v, &coords_id, rec.timestamp),
            None => {
                let mut letter = decode_at(b"", &coords_id, rec.timestamp);
                letter.null_payload = true;
                letter
            }
        };
        if letter.origin != Origin::Envelope {
            letter.key = rec.key.map(<[u8]>::to_vec);
            letter.headers = rec.headers.to_vec();
            letter.source = Source {
                system: "kafka".into(),
                topic: rec
                    .topic
                    .strip_prefix(dlq_prefix)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
                partition: None,
                offset: None,
                timestamp: None,
            };
        }
        return letter;
    };
    let (prefix, topic, partition, offset, stage, class, message, trace, ts) = match origin {
        Origin::Connect => (
            "__connect.errors.",
            "__connect.errors.topic",
            "__connect.errors.partition",
            "__connect.errors.offset",
            header_text(rec.headers, "__connect.errors.stage"),
            header_text(rec.headers, "__connect.errors.exception.class.name"),
            "__connect.errors.exception.message",
            "__connect.errors.exception.stacktrace",
            None,
        ),
        Origin::Spring => (
            "kafka_dlt-",
            "kafka_dlt-original-topic",
            "kafka_dlt-original-partition",
            "kafka_dlt-original-offset",
            Some("listener".to_owned()),
            // The cause is the root of the failure; the exception itself is
            // usually a wrapper ("Listener failed").
            header_text(rec.headers, "kafka_dlt-exception-cause-fqcn")
                .or_else(|| header_text(rec.headers, "kafka_dlt-exception-fqcn")),
            "kafka_dlt-exception-message",
            "kafka_dlt-exception-stacktrace",
            header_int(rec.headers, "kafka_dlt-original-timestamp")
                .and_then(DateTime::from_timestamp_millis),
        ),
        _ => (
            HEADERS_PREFIX,
            "dlq.source.topic",
            "dlq.source.partition",
            "dlq.source.offset",
            header_text(rec.headers, "dlq.stage"),
            header_text(rec.headers, "dlq.error_class"),
            "dlq.error",
            "",
            None,
        ),
    };
    let mut error = header_text(rec.headers, message).unwrap_or_default();
    if let Some(t) = header_text(rec.headers, trace).filter(|t| !t.is_empty()) {
        error.push_str("\n\n");
        error.push_str(&t);
    }
    let failure = crate::Failure::permanent(
        stage.unwrap_or_else(|| "unknown".into()),
        class.unwrap_or_else(|| UNKNOWN_ERROR_CLASS.into()),
        error,
    );
    let id = header_text(rec.headers, "dlq.id")
        .filter(|_| origin == Origin::Headers)
        .unwrap_or(coords_id);
    let mut letter = DeadLetter::new(id, value.to_vec(), &failure);
    letter.null_payload = rec.value.is_none();
    letter.origin = origin;
    letter.attempts = 0;
    letter.key = rec.key.map(<[u8]>::to_vec);
    letter.headers = rec
        .headers
        .iter()
        .filter(|h| !h.name.starts_with(prefix))
        .cloned()
        .collect();
    letter.source = Source {
        system: "kafka".into(),
        topic: header_text(rec.headers, topic),
        partition: header_int(rec.headers, partition).and_then(|p| i32::try_from(p).ok()),
        offset: header_int(rec.headers, offset),
        timestamp: ts,
    };
    let failed_at = rec.timestamp.unwrap_or(letter.failed_at);
    letter.failed_at = failed_at;
    letter.first_failed_at = failed_at;
    if origin == Origin::Headers {
        let parse = |name: &str| header_text(rec.headers, name).and_then(|t| parse_timestamp(&t));
        letter.retryable = header_text(rec.headers, "dlq.retryable").as_deref() == Some("true");
        letter.attempts = header_int(rec.headers, "dlq.attempts").unwrap_or(0) as u32;
        letter.replays = header_int(rec.headers, "dlq.replays").unwrap_or(0) as u32;
        letter.replay_of = header_text(rec.headers, "dlq.replay_of");
        letter.failed_at = parse("dlq.failed_at").unwrap_or(failed_at);
        letter.first_failed_at = parse("dlq.first_failed_at").unwrap_or(letter.failed_at);
    }
    letter
}

/// The id [`decode_kafka_with_prefix`] gives a record, decoding only what it
/// must (see [`kafka_record_own_id`]).
pub fn kafka_record_id(rec: &KafkaRecord<'_>, dlq_prefix: &str) -> String {
    kafka_record_own_id(rec, dlq_prefix)
        .unwrap_or_else(|| format!("kafka:{}:{}:{}", rec.topic, rec.partition, rec.offset))
}

/// The id a record carries itself, `None` when [`decode_kafka_with_prefix`]
/// names it by its DLQ position (`kafka:<topic>:<partition>:<offset>`, unique
/// to the record): a record of another system (Connect, Spring, a
/// seed-format or raw value) has none; a headers-format record has its
/// `dlq.id` header; only a value that mentions a `"dlq"` member can be an
/// envelope with an id, and only that is decoded. For readers that need the
/// ids of many records (deduplication, a search by id).
pub fn kafka_record_own_id(rec: &KafkaRecord<'_>, dlq_prefix: &str) -> Option<String> {
    if header(rec.headers, "__connect.errors.topic").is_some()
        || header(rec.headers, "kafka_dlt-original-topic").is_some()
    {
        return None;
    }
    if header(rec.headers, "dlq.v").is_some() {
        return header_text(rec.headers, "dlq.id");
    }
    match rec.value {
        Some(v) if v.windows(5).any(|w| w == b"\"dlq\"") => {
            let id = decode_kafka_with_prefix(rec, dlq_prefix).id;
            let coords = format!("kafka:{}:{}:{}", rec.topic, rec.partition, rec.offset);
            (id != coords).then_some(id)
        }
        _ => None,
    }
}

/// dlq's headers format: the value is the original payload unchanged, and the
/// metadata goes into `dlq.*` headers after the original headers (as Kafka
/// Connect and Spring do), for consumers that need the raw value.
pub fn to_headers_format(letter: &DeadLetter) -> Vec<Header> {
    let mut headers = letter.headers.clone();
    let mut put = |name: &str, value: String| {
        headers.push(Header {
            name: name.to_owned(),
            value: Some(value.into_bytes()),
        })
    };
    put("dlq.v", ENVELOPE_VERSION.to_string());
    put("dlq.id", letter.id.clone());
    put("dlq.error", letter.error.clone());
    put("dlq.error_class", letter.error_class.clone());
    put("dlq.stage", letter.stage.clone());
    put("dlq.retryable", letter.retryable.to_string());
    put("dlq.attempts", letter.attempts.to_string());
    put("dlq.replays", letter.replays.to_string());
    put("dlq.failed_at", rfc3339(&letter.failed_at));
    put("dlq.first_failed_at", rfc3339(&letter.first_failed_at));
    if let Some(r) = &letter.replay_of {
        put("dlq.replay_of", r.clone());
    }
    if let Some(t) = &letter.source.topic {
        put("dlq.source.topic", t.clone());
    }
    if let Some(p) = letter.source.partition {
        put("dlq.source.partition", p.to_string());
    }
    if let Some(o) = letter.source.offset {
        put("dlq.source.offset", o.to_string());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Failure;
    use proptest::prelude::*;

    fn letter(payload: &[u8]) -> DeadLetter {
        let failure = Failure::permanent("validate", "validation.wrong_type", "bad price");
        let mut l = DeadLetter::new("kafka:t:0:1", payload.to_vec(), &failure);
        l.source = Source {
            system: "kafka".into(),
            topic: Some("polymarket.price_hourly".into()),
            partition: Some(3),
            offset: Some(1812),
            timestamp: None,
        };
        l
    }

    fn roundtrip(l: &DeadLetter, opts: &EncodeOptions) -> DeadLetter {
        let enc = encode(l, opts).expect("encode");
        assert!(enc.bytes.len() <= opts.max_bytes);
        let mut back = decode(&enc.bytes, "fallback");
        let blobs = enc.blobs.clone();
        back.resolve_claims(|c| {
            Ok(blobs
                .iter()
                .find(|b| b.sha256 == c.sha256)
                .map(|b| b.bytes.clone()))
        })
        .expect("resolve");
        back
    }

    #[test]
    fn json_payload_is_embedded_verbatim() {
        let payload = br#"{"market_id":"0xabc",  "price":"N/A","big":12345678901234567890}"#;
        let enc = encode(&letter(payload), &EncodeOptions::default()).expect("encode");
        let text = String::from_utf8(enc.bytes.clone()).expect("utf8");
        assert!(text.starts_with(r#"{"original_record":{"market_id":"0xabc",  "price":"N/A","big":12345678901234567890},"error":"bad price""#), "{text}");
        assert!(text.contains(r#""payload_encoding":"json""#));
        assert_eq!(decode(&enc.bytes, "x").payload, payload);
    }

    #[test]
    fn text_binary_and_whitespace_payloads_roundtrip() {
        for payload in [
            b"plain text, not json".to_vec(),
            vec![0xff, 0x00, 0xfe, b'\n'],
            b" {\"a\":1} ".to_vec(),
            b"{\n  \"pretty\": true\n}".to_vec(),
            Vec::new(),
        ] {
            let back = roundtrip(&letter(&payload), &EncodeOptions::default());
            assert_eq!(back.payload, payload);
        }
    }

    #[test]
    fn encoded_envelope_is_one_line() {
        let l = letter(b"{\n\"a\":\n1}");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        assert!(!enc.bytes.contains(&b'\n'));
    }

    #[test]
    fn seed_format_decodes_with_error_and_original_record() {
        let seed = br#"{"original_record": {"title": "Fed holds rates", "link": "https://example.com/a"}, "error": "Failed to send to primary topic", "timestamp": "2026-11-29T07:00:00.123456+00:00"}"#;
        let l = decode(seed, "imported-1");
        assert_eq!(l.origin, Origin::Seed);
        assert_eq!(l.error, "Failed to send to primary topic");
        assert_eq!(
            l.payload,
            br#"{"title": "Fed holds rates", "link": "https://example.com/a"}"#
        );
        assert_eq!(
            rfc3339(&l.failed_at),
            "2026-11-29T07:00:00.123456Z",
            "timestamp parsed from Python isoformat, its microseconds kept"
        );
        assert_eq!(l.id, "imported-1");
        // Re-encoding keeps the seed fields readable by old consumers.
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
        assert_eq!(v["error"], "Failed to send to primary topic");
        assert_eq!(v["original_record"]["title"], "Fed holds rates");
    }

    #[test]
    fn seed_timestamp_keeps_its_microseconds_through_the_envelope() {
        let seed = br#"{"original_record": {"a": 1}, "error": "boom", "timestamp": "2026-11-29T07:00:00.123456Z"}"#;
        let l = decode(seed, "s-1");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
        assert_eq!(v["timestamp"], "2026-11-29T07:00:00.123456Z");
        assert_eq!(v["dlq"]["first_failed_at"], "2026-11-29T07:00:00.123456Z");
        let back = decode(&enc.bytes, "x");
        assert_eq!(back.first_failed_at, l.first_failed_at);
        assert_eq!(
            format_timestamp(&back.first_failed_at),
            "2026-11-29T07:00:00.123456Z"
        );
    }

    #[test]
    fn dlq_failure_times_print_in_milliseconds() {
        let l = letter(b"{}");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert_eq!(ts.len(), "2026-11-29T07:00:00.123Z".len(), "{ts}");
    }

    #[test]
    fn a_null_payload_stays_null_and_an_empty_one_stays_empty() {
        let mut tombstone = letter(b"");
        tombstone.null_payload = true;
        let enc = encode(&tombstone, &EncodeOptions::default()).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
        assert_eq!(v["original_record"], serde_json::Value::Null);
        assert_eq!(v["dlq"]["payload_encoding"], "null");
        let back = decode(&enc.bytes, "x");
        assert!(back.null_payload);
        assert!(back.payload.is_empty());
        let empty = roundtrip(&letter(b""), &EncodeOptions::default());
        assert!(!empty.null_payload);
        assert!(empty.payload.is_empty());
    }

    #[test]
    fn a_payload_that_is_the_json_null_keeps_its_four_bytes() {
        let back = roundtrip(&letter(b"null"), &EncodeOptions::default());
        assert_eq!(back.payload, b"null");
        assert!(!back.null_payload);
    }

    #[test]
    fn an_envelope_written_before_null_payloads_decodes_as_before() {
        let old = br#"{"original_record":{"event_id":"evt-1","price":"0.42"},"error":"field \"price\": expected a number","timestamp":"2026-11-29T07:00:00.123Z","dlq":{"v":1,"id":"file:3f2a9c0d1e4b:1812","source":{"system":"file","topic":"polymarket.price_hourly","partition":0,"offset":1812},"key":null,"headers":[["trace-id","t-1"],["bin",{"base64":"/wA="}],["nil",null]],"stage":"validate","error_class":"validation.wrong_type","retryable":false,"attempts":1,"first_failed_at":"2026-11-29T07:00:00.123Z","replays":0,"payload_encoding":"json"}}"#;
        let l = decode(old, "x");
        assert_eq!(l.origin, Origin::Envelope);
        assert_eq!(l.id, "file:3f2a9c0d1e4b:1812");
        assert_eq!(l.payload, br#"{"event_id":"evt-1","price":"0.42"}"#);
        assert!(!l.null_payload);
        assert_eq!(
            l.headers,
            vec![
                h("trace-id", b"t-1"),
                h("bin", b"\xff\x00"),
                Header {
                    name: "nil".into(),
                    value: None
                }
            ]
        );
        // And it encodes to the same bytes again.
        assert_eq!(
            encode(&l, &EncodeOptions::unlimited())
                .expect("encode")
                .bytes,
            old
        );
    }

    #[test]
    fn a_raw_value_shaped_like_an_incomplete_envelope_keeps_its_bytes() {
        for raw in [
            &br#"{"dlq": {"v": 1}}"#[..],
            br#"{"dlq": {"v": 1, "id": "x"}, "original_record": "a", "error": "e"}"#,
            br#"{"original_record": null, "error": "e", "timestamp": "2026-11-29T07:00:00Z", "dlq": {"v": 2}}"#,
            br#"{"dlq": null}"#,
            br#"{"original_record": 1, "error": {"not": "text"}}"#,
            br#"{"original_record": 1, "error": "e", "timestamp": "yesterday"}"#,
        ] {
            let l = decode(raw, "raw-1");
            assert_eq!(l.origin, Origin::Raw, "{}", String::from_utf8_lossy(raw));
            assert_eq!(l.payload, raw);
        }
    }

    #[test]
    fn a_header_name_that_is_not_utf8_roundtrips_as_base64() {
        let mut l = letter(b"{}");
        l.headers = vec![
            Header::from_name_bytes(b"\xff\xfename", Some(b"v".to_vec())),
            Header::from_name_bytes(b"\0starts-with-nul", None),
            h("plain", b"p"),
        ];
        assert_eq!(l.headers[0].name_bytes().as_ref(), b"\xff\xfename");
        assert_eq!(l.headers[1].name_bytes().as_ref(), b"\0starts-with-nul");
        assert_eq!(l.headers[2].name_bytes().as_ref(), b"plain");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
        assert_eq!(
            v["dlq"]["headers"][0],
            serde_json::json!([{"base64": "//5uYW1l"}, "v"])
        );
        assert_eq!(v["dlq"]["headers"][2], serde_json::json!(["plain", "p"]));
        let back = decode(&enc.bytes, "x");
        assert_eq!(back.headers, l.headers);
    }

    #[test]
    fn non_envelope_bytes_become_a_raw_record() {
        let l = decode(b"\xff\xfe not json", "raw-1");
        assert_eq!(l.origin, Origin::Raw);
        assert_eq!(l.error_class, UNKNOWN_ERROR_CLASS);
        assert_eq!(l.payload, b"\xff\xfe not json");
        let l = decode(br#"{"market_id":"0xabc"}"#, "raw-2");
        assert_eq!(l.origin, Origin::Raw);
    }

    #[test]
    fn long_error_is_cut_with_marker() {
        let mut l = letter(b"{}");
        l.error = "x".repeat(200_000);
        let opts = EncodeOptions::default();
        let back = roundtrip(&l, &opts);
        assert!(back.error.len() <= opts.max_error_bytes);
        assert!(back.error.ends_with("…[truncated, 200000 bytes in all]"));
        assert_eq!(back.error_truncated_from, Some(200_000));
    }

    #[test]
    fn oversized_payload_goes_to_a_claim_check() {
        let payload = vec![b'a'; 5 * 1024 * 1024];
        let l = letter(&payload);
        let opts = EncodeOptions::default();
        let enc = encode(&l, &opts).expect("encode");
        assert!(enc.bytes.len() <= opts.max_bytes);
        assert_eq!(enc.blobs.len(), 1);
        assert_eq!(enc.blobs[0].sha256, sha256_hex(&payload));
        let decoded = decode(&enc.bytes, "x");
        assert_eq!(decoded.claim_checks[0].part, Part::Payload);
        assert_eq!(decoded.claim_checks[0].size, payload.len() as u64);
        assert_eq!(roundtrip(&l, &opts).payload, payload);
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let l = letter(&vec![b'a'; 2 * 1024 * 1024]);
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let mut back = decode(&enc.bytes, "x");
        let err = back
            .resolve_claims(|_| Ok(Some(b"tampered".to_vec())))
            .expect_err("must fail");
        assert!(matches!(err, ClaimError::Corrupt { .. }));
    }

    #[test]
    fn refailed_replaces_error_and_keeps_first_failure() {
        let l = letter(b"{}");
        let f2 = Failure::permanent("validate", "validation.price_out_of_range", "price 1.7");
        let r1 = l.refailed(b"{\"p\":1}".to_vec(), &f2);
        let r2 = r1.refailed(b"{\"p\":2}".to_vec(), &f2);
        assert_eq!(r1.id, "kafka:t:0:1~r1");
        assert_eq!(r2.id, "kafka:t:0:1~r2");
        assert_eq!(r2.replays, 2);
        assert_eq!(r2.replay_of.as_deref(), Some("kafka:t:0:1~r1"));
        assert_eq!(r2.first_failed_at, l.first_failed_at);
        assert_eq!(r2.error, "price 1.7");
    }

    fn h(name: &str, value: &[u8]) -> Header {
        Header {
            name: name.into(),
            value: Some(value.to_vec()),
        }
    }

    fn kafka<'a>(value: &'a [u8], headers: &'a [Header]) -> KafkaRecord<'a> {
        KafkaRecord {
            value: Some(value),
            key: Some(b"0xabc"),
            headers,
            topic: "dlq.polymarket.price_hourly",
            partition: 2,
            offset: 77,
            timestamp: DateTime::from_timestamp(1_800_000_000, 0),
        }
    }

    #[test]
    fn connect_dlq_record_decodes_with_original_coordinates() {
        let headers = vec![
            h("trace-id", b"t-1"),
            h("__connect.errors.topic", b"polymarket.price_hourly"),
            h("__connect.errors.partition", b"3"),
            h("__connect.errors.offset", b"1812"),
            h("__connect.errors.stage", b"VALUE_CONVERTER"),
            h(
                "__connect.errors.exception.class.name",
                b"org.apache.kafka.connect.errors.DataException",
            ),
            h(
                "__connect.errors.exception.message",
                b"Converting byte[] to Kafka Connect data failed",
            ),
            h(
                "__connect.errors.exception.stacktrace",
                b"org.apache.kafka...\n\tat ...",
            ),
        ];
        let l = decode_kafka(&kafka(b"{\"price\":", &headers));
        assert_eq!(l.origin, Origin::Connect);
        assert_eq!(l.id, "kafka:dlq.polymarket.price_hourly:2:77");
        assert_eq!(l.payload, b"{\"price\":");
        assert_eq!(l.key.as_deref(), Some(&b"0xabc"[..]));
        assert_eq!(l.headers, vec![h("trace-id", b"t-1")]);
        assert_eq!(l.source.topic.as_deref(), Some("polymarket.price_hourly"));
        assert_eq!((l.source.partition, l.source.offset), (Some(3), Some(1812)));
        assert_eq!(l.stage, "VALUE_CONVERTER");
        assert_eq!(
            l.error_class,
            "org.apache.kafka.connect.errors.DataException"
        );
        assert!(
            l.error
                .starts_with("Converting byte[] to Kafka Connect data failed\n\norg.apache")
        );
    }

    #[test]
    fn spring_dlt_record_decodes_binary_coordinates_and_root_cause() {
        let headers = vec![
            h("kafka_dlt-original-topic", b"rss.events"),
            h("kafka_dlt-original-partition", &5i32.to_be_bytes()),
            h("kafka_dlt-original-offset", &42i64.to_be_bytes()),
            h(
                "kafka_dlt-original-timestamp",
                &1_800_000_000_000i64.to_be_bytes(),
            ),
            h(
                "kafka_dlt-exception-fqcn",
                b"org.springframework.kafka.listener.ListenerExecutionFailedException",
            ),
            h(
                "kafka_dlt-exception-cause-fqcn",
                b"com.fasterxml.jackson.core.JsonParseException",
            ),
            h(
                "kafka_dlt-exception-message",
                b"Listener failed; Unexpected character",
            ),
        ];
        let l = decode_kafka(&kafka(b"\xff\x00raw", &headers));
        assert_eq!(l.origin, Origin::Spring);
        assert_eq!(l.payload, b"\xff\x00raw");
        assert!(l.headers.is_empty());
        assert_eq!(l.source.topic.as_deref(), Some("rss.events"));
        assert_eq!((l.source.partition, l.source.offset), (Some(5), Some(42)));
        assert_eq!(
            l.error_class,
            "com.fasterxml.jackson.core.JsonParseException"
        );
        assert_eq!(
            l.source.timestamp,
            DateTime::from_timestamp(1_800_000_000, 0)
        );
    }

    #[test]
    fn headers_format_roundtrips() {
        let mut l = letter(b"\x00binary value");
        l.headers = vec![h("trace-id", b"t-9")];
        l.key = Some(b"k".to_vec());
        l.replays = 2;
        l.replay_of = Some("kafka:t:0:1~r1".into());
        let headers = to_headers_format(&l);
        let mut rec = kafka(&l.payload, &headers);
        rec.key = Some(b"k");
        let back = decode_kafka(&rec);
        assert_eq!(back.origin, Origin::Headers);
        assert_eq!(back.id, l.id);
        assert_eq!(back.payload, l.payload);
        assert_eq!(back.headers, l.headers);
        assert_eq!(back.key, l.key);
        assert_eq!(
            (back.error_class.as_str(), back.replays),
            ("validation.wrong_type", 2)
        );
        assert_eq!(back.replay_of, l.replay_of);
        assert_eq!(back.source.offset, Some(1812));
        assert_eq!(rfc3339(&back.first_failed_at), rfc3339(&l.first_failed_at));
    }

    #[test]
    fn a_tombstone_on_kafka_decodes_as_a_null_payload_with_its_key() {
        let mut rec = kafka(b"", &[]);
        rec.value = None;
        let l = decode_kafka(&rec);
        assert_eq!(l.origin, Origin::Raw);
        assert!(l.null_payload);
        assert_eq!(l.key.as_deref(), Some(&b"0xabc"[..]));
        let mut empty = kafka(b"", &[]);
        empty.value = Some(b"");
        assert!(!decode_kafka(&empty).null_payload);
        let connect = [h("__connect.errors.topic", b"t")];
        let mut rec = kafka(b"", &connect);
        rec.value = None;
        assert!(decode_kafka(&rec).null_payload);
    }

    #[test]
    fn a_raw_record_failed_when_kafka_stored_it() {
        let l = decode_kafka(&kafka(b"plain", &[]));
        assert_eq!(
            l.failed_at,
            DateTime::from_timestamp(1_800_000_000, 0).expect("ts")
        );
        assert_eq!(l.first_failed_at, l.failed_at);
        let seed = br#"{"original_record": 1, "error": "e"}"#;
        let l = decode_kafka(&kafka(seed, &[]));
        assert_eq!(l.origin, Origin::Seed);
        assert_eq!(
            l.first_failed_at,
            DateTime::from_timestamp(1_800_000_000, 0).expect("ts")
        );
    }

    #[test]
    fn raw_topic_inference_uses_the_configured_prefix() {
        let mut rec = kafka(b"plain", &[]);
        rec.topic = "errors-polymarket.price_hourly";
        let l = decode_kafka_with_prefix(&rec, "errors-");
        assert_eq!(l.source.topic.as_deref(), Some("polymarket.price_hourly"));
        assert_eq!(decode_kafka(&rec).source.topic, None, "not a dlq. topic");
    }

    #[test]
    fn record_ids_are_those_of_the_whole_decode() {
        let l = letter(b"{\"dlq\":1}");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let seed =
            br#"{"original_record":{"a":1},"error":"boom","timestamp":"2026-01-01T00:00:00Z"}"#;
        let mentions = br#"{"original_record":{"dlq":1},"error":"x"}"#;
        let connect = vec![h("__connect.errors.topic", b"t")];
        let spring = vec![h("kafka_dlt-original-topic", b"t")];
        let headers_format = to_headers_format(&l);
        let no_id: Vec<Header> = vec![h("dlq.v", b"1")];
        let cases: Vec<KafkaRecord<'_>> = vec![
            kafka(&enc.bytes, &[]),
            kafka(seed, &[]),
            kafka(mentions, &[]),
            kafka(b"plain", &[]),
            kafka(b"{}", &connect),
            kafka(&enc.bytes, &spring),
            kafka(b"v", &headers_format),
            kafka(b"v", &no_id),
            KafkaRecord {
                value: None,
                ..kafka(b"", &[])
            },
        ];
        for rec in &cases {
            assert_eq!(
                kafka_record_id(rec, "dlq."),
                decode_kafka_with_prefix(rec, "dlq.").id,
                "{:?}",
                rec.value.map(String::from_utf8_lossy)
            );
        }
        assert_eq!(kafka_record_id(&cases[0], "dlq."), l.id);
    }

    #[test]
    fn envelope_and_raw_values_on_kafka() {
        let l = letter(b"{}");
        let enc = encode(&l, &EncodeOptions::default()).expect("encode");
        let back = decode_kafka(&kafka(&enc.bytes, &[]));
        assert_eq!(back.id, l.id);
        assert_eq!(back.origin, Origin::Envelope);
        let raw = decode_kafka(&kafka(b"plain", &[h("a", b"b")]));
        assert_eq!(raw.origin, Origin::Raw);
        assert_eq!(raw.id, "kafka:dlq.polymarket.price_hourly:2:77");
        assert_eq!(raw.headers, vec![h("a", b"b")]);
        assert_eq!(raw.source.topic.as_deref(), Some("polymarket.price_hourly"));
    }

    fn arb_letter() -> impl Strategy<Value = DeadLetter> {
        (
            prop::collection::vec(any::<u8>(), 0..3000),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..600)),
            prop::collection::vec(
                (
                    "[a-z.-]{0,12}",
                    prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
                ),
                0..40,
            ),
            ".{0,3000}",
            any::<bool>(),
        )
            .prop_map(|(payload, key, headers, error, json)| {
                let payload = if json {
                    serde_json::to_vec(&serde_json::json!({"p": String::from_utf8_lossy(&payload)}))
                        .expect("json")
                } else {
                    payload
                };
                let mut l = letter(&payload);
                l.key = key;
                l.headers = headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect();
                l.error = error;
                l
            })
    }

    proptest! {
        #[test]
        fn roundtrip_is_byte_exact_within_the_limit(l in arb_letter(), max in 4096usize..20_000) {
            let opts = EncodeOptions { max_bytes: max, max_error_bytes: 2048 };
            let enc = encode(&l, &opts).expect("encode");
            prop_assert!(enc.bytes.len() <= max, "{} > {}", enc.bytes.len(), max);
            let back = roundtrip(&l, &opts);
            prop_assert_eq!(&back.payload, &l.payload);
            prop_assert_eq!(&back.key, &l.key);
            prop_assert_eq!(&back.headers, &l.headers);
            prop_assert_eq!(&back.id, &l.id);
            prop_assert_eq!(&back.error_class, &l.error_class);
            if back.error != l.error {
                prop_assert!(back.error.contains("…[truncated,"));
                let kept = back.error.split(" …[truncated,").next().unwrap_or_default();
                prop_assert!(l.error.starts_with(kept));
            }
        }

        #[test]
        fn arbitrary_payload_bytes_roundtrip(payload in prop::collection::vec(any::<u8>(), 0..5000)) {
            let back = roundtrip(&letter(&payload), &EncodeOptions::default());
            prop_assert_eq!(back.payload, payload);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let l = decode(&bytes, "id");
            // Whatever it was, a non-envelope keeps its bytes.
            if l.origin == Origin::Raw {
                prop_assert_eq!(l.payload, bytes);
            }
        }

        #[test]
        fn an_envelope_missing_any_member_is_a_raw_record_byte_for_byte(
            l in arb_letter(),
            pick in any::<prop::sample::Index>(),
            how in 0..3u8,
        ) {
            let enc = encode(&l, &EncodeOptions::default()).expect("encode");
            let mut v: serde_json::Value = serde_json::from_slice(&enc.bytes).expect("json");
            // Every member the encoder always writes, top level and in `dlq`.
            let members = [
                "original_record", "error", "timestamp", "dlq.v", "dlq.id",
                "dlq.source", "dlq.key", "dlq.headers", "dlq.stage", "dlq.error_class",
                "dlq.retryable", "dlq.attempts", "dlq.first_failed_at", "dlq.replays",
                "dlq.payload_encoding",
            ];
            let member = members[pick.index(members.len())];
            // Any JSON is a valid JSON payload.
            prop_assume!(member != "original_record" || how == 0);
            let (object, name) = match member.strip_prefix("dlq.") {
                Some(name) => (&mut v["dlq"], name),
                None => (&mut v, member),
            };
            let object = object.as_object_mut().expect("object");
            match how {
                0 => { object.remove(name); }
                // A value of a type no encoder writes there.
                1 => { object.insert(name.into(), serde_json::json!([[[]]])); }
                _ => { object.insert(name.into(), serde_json::json!({"x": true})); }
            }
            let bytes = serde_json::to_vec(&v).expect("json");
            let back = decode(&bytes, "id");
            prop_assert_eq!(back.origin, Origin::Raw, "{}", member);
            prop_assert_eq!(back.payload, bytes);
        }

        #[test]
        fn decode_never_panics_on_envelope_like_json(s in r#"\{"(original_record|error|dlq|timestamp)":.{0,40}\}"#) {
            let _ = decode(s.as_bytes(), "id");
        }
    }
}
