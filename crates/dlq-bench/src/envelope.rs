//! Fixtures of the envelope bench: realistic dead letters and the naive
//! envelope they are compared with.
//!
//! Every case is a record that failed MarketLag validation, with the error
//! class and message [`dlq_marketlag::validate`] gives it, Kafka source
//! coordinates, a key and three headers, as the processor would write it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeZone as _, Utc};
use dlq_core::Failure;
use dlq_core::envelope::{DeadLetter, Header, Source};
use dlq_marketlag::{Limits, Pipeline, validate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Polymarket price record with a price out of [0, 1], as the generator
/// writes them (243 bytes).
pub const JSON_PAYLOAD: &str = r#"{"event_id":"ph-dcb33303f8d03907","market_id":"0xadca5b54bb062f1d843e2c0e71ba72d3dc404e3d","question":"Will the Democrats win the House in the 2026 midterms?","outcome":"No","price":-0.69,"volume":1871332.43,"timestamp":"2026-11-01T13:00:00Z"}"#;

/// A log line that reached the topic instead of a record (UTF-8, not JSON).
pub const TEXT_PAYLOAD: &str = "2026-11-01T13:00:04.118Z WARN polymarket-ingest[3121]: price feed for market 0xadca5b54bb062f1d843e2c0e71ba72d3dc404e3d returned HTTP 502 Bad Gateway after 3 attempts (upstream=clob.polymarket.com, latency_ms=30012)";

/// Size of the binary payload.
pub const BINARY_LEN: usize = 1024;

/// Size of the payload that is too large for a 1 MiB envelope.
pub const LARGE_LEN: usize = 2 * 1024 * 1024;

/// One benchmark case: a dead letter and its name.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short, filename-safe name (`json`, `text`, `binary`, `claim_check`).
    pub name: &'static str,
    /// What the payload is, for reports.
    pub description: &'static str,
    /// The dead letter.
    pub letter: DeadLetter,
}

/// The four cases, in the order they are reported.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "json",
            description: "MarketLag JSON record, embedded verbatim",
            letter: letter(JSON_PAYLOAD.as_bytes().to_vec()),
        },
        Case {
            name: "text",
            description: "UTF-8 log line, written as a JSON string",
            letter: letter(TEXT_PAYLOAD.as_bytes().to_vec()),
        },
        Case {
            name: "binary",
            description: "1 KiB binary record, written as base64",
            letter: letter(binary_payload(BINARY_LEN)),
        },
        Case {
            name: "claim_check",
            description: "2 MiB JSON array, claim-checked (1 MiB envelope limit)",
            letter: letter(large_json_payload(LARGE_LEN)),
        },
    ]
}

/// `len` deterministic bytes that are not UTF-8 (an Avro- or protobuf-like
/// record a JSON consumer cannot read).
pub fn binary_payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            // xorshift64: cheap, deterministic, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    if let Some(b) = bytes.get_mut(1) {
        *b = 0xFF; // never valid in UTF-8: the base64 path is certain
    }
    bytes
}

/// A JSON array of copies of [`JSON_PAYLOAD`], padded with spaces to exactly
/// `len` bytes (at least a few hundred).
pub fn large_json_payload(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    while out.len() + JSON_PAYLOAD.len() + 2 <= len {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(JSON_PAYLOAD.as_bytes());
    }
    // Whitespace inside the array keeps the bytes valid JSON; RawValue keeps
    // inner whitespace, so the payload is still embeddable verbatim.
    out.resize(len - 1, b' ');
    out.push(b']');
    out
}

/// The time every fixture failed at (fixed, so encoded sizes are stable).
pub fn failed_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 13, 0, 4)
        .single()
        .unwrap_or_default()
        + chrono::Duration::milliseconds(118)
}

/// A dead letter for `payload` as the Kafka processor writes it: the class
/// and message MarketLag validation gives the payload, source coordinates, a
/// key and three headers.
pub fn letter(payload: Vec<u8>) -> DeadLetter {
    let failure = match validate(Pipeline::Polymarket, &payload, &Limits::default()) {
        Ok(_) => Failure::permanent("sink", "downstream.rejected", "rejected downstream"),
        Err(e) => Failure::permanent("validate", e.class, e.message),
    };
    let topic = Pipeline::Polymarket.topic();
    let mut letter = DeadLetter::new(format!("kafka:{topic}:3:1048576"), payload, &failure);
    letter.key = Some(b"0xadca5b54bb062f1d843e2c0e71ba72d3dc404e3d".to_vec());
    letter.headers = vec![
        header("content-type", "application/json"),
        header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        header("producer", "polymarket-ingest/1.4.2"),
    ];
    letter.source = Source {
        system: "kafka".into(),
        topic: Some(topic.into()),
        partition: Some(3),
        offset: Some(1_048_576),
        timestamp: Some(failed_at() - chrono::Duration::milliseconds(2_140)),
    };
    letter.failed_at = failed_at();
    letter.first_failed_at = failed_at();
    letter
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Some(value.as_bytes().to_vec()),
    }
}

/// The naive envelope: the fields of the v1 envelope, with the payload held
/// as a `serde_json::Value`, so that writing it re-serializes the payload
/// (and reading it builds a tree of the whole payload).
///
/// It is what a DLQ writer built on `#[derive(Serialize)]` alone tends to
/// look like. It is not byte-exact (a `Value` map sorts keys and rewrites
/// numbers) and has no size bound; it is here as a speed baseline only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NaiveEnvelope {
    /// The payload: parsed JSON, a string, or `{"base64": …}`.
    pub original_record: Value,
    /// The error text.
    pub error: String,
    /// When the record failed.
    pub timestamp: DateTime<Utc>,
    /// Everything else.
    pub dlq: NaiveMeta,
}

/// The `dlq` object of [`NaiveEnvelope`], field for field the v1 one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NaiveMeta {
    /// Format version.
    pub v: u32,
    /// Dead-letter id.
    pub id: String,
    /// Where the record came from.
    pub source: Source,
    /// The key, as text.
    pub key: Option<String>,
    /// The headers, values as text.
    pub headers: Vec<(String, Option<String>)>,
    /// Failed stage.
    pub stage: String,
    /// Error class.
    pub error_class: String,
    /// Whether a retry could help.
    pub retryable: bool,
    /// Attempts made.
    pub attempts: u32,
    /// First failure.
    pub first_failed_at: DateTime<Utc>,
    /// Replays so far.
    pub replays: u32,
    /// `json`, `text` or `base64`.
    pub payload_encoding: String,
}

impl NaiveEnvelope {
    /// Builds the naive envelope of `letter`: the payload is parsed into a
    /// `Value` when it is JSON, else kept as a string, else base64.
    pub fn of(letter: &DeadLetter) -> NaiveEnvelope {
        let (original_record, encoding) = match serde_json::from_slice::<Value>(&letter.payload) {
            Ok(value) => (value, "json"),
            Err(_) => match std::str::from_utf8(&letter.payload) {
                Ok(text) => (Value::String(text.to_owned()), "text"),
                Err(_) => (
                    serde_json::json!({ "base64": BASE64.encode(&letter.payload) }),
                    "base64",
                ),
            },
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        NaiveEnvelope {
            original_record,
            error: letter.error.clone(),
            timestamp: letter.failed_at,
            dlq: NaiveMeta {
                v: 1,
                id: letter.id.clone(),
                source: letter.source.clone(),
                key: letter.key.as_deref().map(text),
                headers: letter
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.as_deref().map(text)))
                    .collect(),
                stage: letter.stage.clone(),
                error_class: letter.error_class.clone(),
                retryable: letter.retryable,
                attempts: letter.attempts,
                first_failed_at: letter.first_failed_at,
                replays: letter.replays,
                payload_encoding: encoding.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_core::envelope::{EncodeOptions, Part, decode, encode};
    use std::collections::HashMap;

    #[test]
    fn every_case_round_trips_byte_exact_through_dlq_and_takes_its_path() {
        for case in cases() {
            let enc = encode(&case.letter, &EncodeOptions::default()).expect("encode");
            assert!(enc.bytes.len() <= EncodeOptions::default().max_bytes);
            let blobs: HashMap<String, Vec<u8>> = enc
                .blobs
                .iter()
                .map(|b| (b.sha256.clone(), b.bytes.clone()))
                .collect();
            let mut back = decode(&enc.bytes, "-");
            assert_eq!(
                back.claim_checks.iter().map(|c| c.part).collect::<Vec<_>>(),
                if case.name == "claim_check" {
                    vec![Part::Payload]
                } else {
                    vec![]
                },
                "{}",
                case.name
            );
            back.resolve_claims(|c| Ok(blobs.get(&c.sha256).cloned()))
                .expect("resolve");
            assert_eq!(back.payload, case.letter.payload, "{}", case.name);
            assert_eq!(back.error_class, case.letter.error_class);
        }
    }

    #[test]
    fn fixtures_have_the_sizes_and_classes_the_report_states() {
        let c = cases();
        assert_eq!(c[0].letter.payload.len(), 243);
        assert_eq!(c[0].letter.error_class, "validation.price_out_of_range");
        assert_eq!(c[1].letter.payload.len(), 215);
        assert_eq!(c[1].letter.error_class, "decode.malformed_json");
        assert_eq!(c[2].letter.payload.len(), BINARY_LEN);
        assert_eq!(c[2].letter.error_class, "decode.invalid_utf8");
        assert_eq!(c[3].letter.payload.len(), LARGE_LEN);
        assert_eq!(c[3].letter.error_class, "input.oversized");
        assert!(serde_json::from_slice::<Value>(&c[3].letter.payload).is_ok());
    }

    #[test]
    fn naive_envelope_round_trips_through_serde_json() {
        for case in cases() {
            let naive = NaiveEnvelope::of(&case.letter);
            let bytes = serde_json::to_vec(&naive).expect("to_vec");
            let back: NaiveEnvelope = serde_json::from_slice(&bytes).expect("from_slice");
            assert_eq!(back, naive, "{}", case.name);
        }
    }
}
