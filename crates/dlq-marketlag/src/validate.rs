//! Validation of raw record bytes into [`RssEvent`] / [`PriceHourly`].
//!
//! Checks run in a fixed order, one class at a time over all fields (see
//! [`class::VALIDATION`]): size, emptiness, UTF-8, JSON syntax, object shape,
//! then every field's presence, then null, then JSON type, then emptiness,
//! then the domain rules. So a record with a missing `link` and a string
//! `price` is reported as `validation.missing_field` — the class a record gets
//! does not depend on the order of its keys. Unknown fields are ignored (a
//! producer may add fields before consumers know them). A duplicated key keeps
//! its last value, as serde_json does.

use std::fmt;

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::class;
use crate::pipeline::Pipeline;
use crate::record::{Outcome, PriceHourly, RssEvent};

/// Limits applied before a record is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A record larger than this many bytes is rejected as `input.oversized`
    /// without being parsed. Default: 1 MiB (1,048,576), the default
    /// `max.message.bytes` order of magnitude of Kafka and the SQS limit.
    pub max_record_bytes: usize,
}

impl Limits {
    /// The default of [`Limits::max_record_bytes`]: 1 MiB.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: Limits::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Why a record is invalid. Always permanent: retrying the same bytes gives
/// the same error; only a fix (or a new validator) helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// One of the constants in [`class`], e.g. `validation.wrong_type`.
    pub class: &'static str,
    /// A human-readable message, e.g.
    /// `field "price": expected a number, got a string ("0.42")`. Values
    /// quoted in it are cut at 80 characters.
    pub message: String,
    /// The JSON field involved, when there is one.
    pub field: Option<String>,
}

impl ValidationError {
    fn new(class: &'static str, message: String) -> Self {
        ValidationError {
            class,
            message,
            field: None,
        }
    }

    fn at(class: &'static str, field: &str, message: String) -> Self {
        ValidationError {
            class,
            message,
            field: Some(field.to_owned()),
        }
    }

    /// Always `false`: validation failures are permanent.
    pub const fn retryable(&self) -> bool {
        false
    }
}

/// Shows the message alone: the class travels separately (the envelope's
/// `error_class`), the message is the envelope's `error`.
impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

/// A record that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub enum Valid {
    /// A valid `rss.events` record.
    Rss(RssEvent),
    /// A valid `polymarket.price_hourly` record.
    Polymarket(PriceHourly),
}

impl Valid {
    /// The pipeline the record belongs to.
    pub const fn pipeline(&self) -> Pipeline {
        match self {
            Valid::Rss(_) => Pipeline::Rss,
            Valid::Polymarket(_) => Pipeline::Polymarket,
        }
    }

    /// The record's unique id (`id` or `event_id`).
    pub fn id(&self) -> &str {
        match self {
            Valid::Rss(r) => &r.id,
            Valid::Polymarket(p) => &p.event_id,
        }
    }
}

/// Validates one record of `pipeline`.
///
/// Never panics, whatever the bytes. The order of checks, and so which class
/// a record with several problems gets, is the order of
/// [`class::VALIDATION`].
///
/// ```
/// use dlq_marketlag::{Limits, Pipeline, class, validate};
///
/// let line = br#"{"event_id":"ph-1","market_id":"0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0",
///   "question":"Will the Fed cut rates in December 2026?","outcome":"Yes",
///   "price":"0.42","volume":1200.5,"timestamp":"2026-11-01T05:00:00Z"}"#;
/// let err = validate(Pipeline::Polymarket, line, &Limits::default()).unwrap_err();
/// assert_eq!(err.class, class::WRONG_TYPE);
/// assert_eq!(err.field.as_deref(), Some("price"));
/// assert_eq!(err.message, r#"field "price": expected a number, got a string ("0.42")"#);
/// ```
pub fn validate(
    pipeline: Pipeline,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Valid, ValidationError> {
    if bytes.len() > limits.max_record_bytes {
        return Err(ValidationError::new(
            class::OVERSIZED,
            format!(
                "record is {} bytes, over the limit of {} bytes",
                bytes.len(),
                limits.max_record_bytes
            ),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let message = if bytes.is_empty() {
            "empty record".to_owned()
        } else {
            format!("record is only whitespace ({} bytes)", bytes.len())
        };
        return Err(ValidationError::new(class::EMPTY, message));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let byte = bytes.get(at).copied().unwrap_or_default();
        ValidationError::new(
            class::INVALID_UTF8,
            format!("invalid UTF-8 at byte offset {at} (byte 0x{byte:02X})"),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ValidationError::new(class::MALFORMED_JSON, format!("malformed JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ValidationError::new(
            class::NOT_AN_OBJECT,
            format!("expected a JSON object, got {}", kind(&value)),
        ));
    };
    match pipeline {
        Pipeline::Rss => validate_rss(&map).map(Valid::Rss),
        Pipeline::Polymarket => validate_price(&map).map(Valid::Polymarket),
    }
}

/// The record's unique id (`id` for RSS, `event_id` for Polymarket) if
/// `bytes` are a JSON object holding it as a string — even when other fields
/// are invalid, so that a record can be traced through fixes and replays.
/// `None` for anything else (not JSON, not an object, no id, a non-string id).
/// An empty string id is returned as `Some("")`.
pub fn record_id(pipeline: Pipeline, bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get(pipeline.id_field())?.as_str().map(str::to_owned)
}

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any string.
    Str,
    /// A string with at least one non-whitespace character.
    NonEmptyStr,
    /// Any number.
    Num,
    /// An array of strings.
    StrArray,
}

const RSS_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::NonEmptyStr),
    ("title", Kind::NonEmptyStr),
    ("link", Kind::Str),
    ("feed", Kind::NonEmptyStr),
    ("published", Kind::Str),
    ("summary", Kind::Str),
    ("tags", Kind::StrArray),
];

const PRICE_FIELDS: &[(&str, Kind)] = &[
    ("event_id", Kind::NonEmptyStr),
    ("market_id", Kind::Str),
    ("question", Kind::NonEmptyStr),
    ("outcome", Kind::Str),
    ("price", Kind::Num),
    ("volume", Kind::Num),
    ("timestamp", Kind::Str),
];

/// Presence, null, type and emptiness, each over all fields before the next.
fn check_shape(map: &Map<String, Value>, fields: &[(&str, Kind)]) -> Result<(), ValidationError> {
    if let Some((name, _)) = fields.iter().find(|(name, _)| !map.contains_key(*name)) {
        return Err(ValidationError::at(
            class::MISSING_FIELD,
            name,
            format!("missing field \"{name}\""),
        ));
    }
    if let Some((name, _)) = fields
        .iter()
        .find(|(name, _)| map.get(*name).is_some_and(Value::is_null))
    {
        return Err(ValidationError::at(
            class::NULL_FIELD,
            name,
            format!("field \"{name}\" is null"),
        ));
    }
    for (name, kind) in fields {
        let Some(value) = map.get(*name) else {
            continue;
        };
        let problem = match (kind, value) {
            (Kind::Str | Kind::NonEmptyStr, Value::String(_)) | (Kind::Num, Value::Number(_)) => {
                None
            }
            (Kind::Str | Kind::NonEmptyStr, v) => {
                Some(format!("expected a string, got {}", describe(v)))
            }
            (Kind::Num, v) => Some(format!("expected a number, got {}", describe(v))),
            (Kind::StrArray, Value::Array(items)) => {
                items.iter().position(|item| !item.is_string()).map(|i| {
                    format!(
                        "expected an array of strings, got {} at index {i}",
                        describe(&items[i])
                    )
                })
            }
            (Kind::StrArray, v) => {
                Some(format!("expected an array of strings, got {}", describe(v)))
            }
        };
        if let Some(problem) = problem {
            return Err(ValidationError::at(
                class::WRONG_TYPE,
                name,
                format!("field \"{name}\": {problem}"),
            ));
        }
    }
    for (name, kind) in fields {
        if *kind == Kind::NonEmptyStr && str_field(map, name).trim().is_empty() {
            return Err(ValidationError::at(
                class::EMPTY_FIELD,
                name,
                format!("field \"{name}\" is empty"),
            ));
        }
    }
    Ok(())
}

/// A field already checked to be a string; `""` otherwise (never reached).
fn str_field<'a>(map: &'a Map<String, Value>, name: &str) -> &'a str {
    map.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn validate_rss(map: &Map<String, Value>) -> Result<RssEvent, ValidationError> {
    check_shape(map, RSS_FIELDS)?;
    let published = rfc3339(map, "published")?;
    let link = str_field(map, "link");
    // The reason (`check_http_url`'s error) is not in the message: the value
    // shows it, and one message template per reason would split one kind of
    // failure into several groups in `dlq analyze`.
    if check_http_url(link).is_err() {
        return Err(ValidationError::at(
            class::BAD_URL,
            "link",
            format!(
                "field \"link\": expected an absolute http(s) URL, got {}",
                quote(link)
            ),
        ));
    }
    let tags = map
        .get("tags")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(RssEvent {
        id: str_field(map, "id").to_owned(),
        title: str_field(map, "title").to_owned(),
        link: link.to_owned(),
        feed: str_field(map, "feed").to_owned(),
        published,
        summary: str_field(map, "summary").to_owned(),
        tags,
    })
}

fn validate_price(map: &Map<String, Value>) -> Result<PriceHourly, ValidationError> {
    check_shape(map, PRICE_FIELDS)?;
    let number = |name: &str| map.get(name).and_then(Value::as_f64).unwrap_or_default();
    let shown = |name: &str| map.get(name).map(Value::to_string).unwrap_or_default();

    let price = number("price");
    if !(0.0..=1.0).contains(&price) {
        return Err(ValidationError::at(
            class::PRICE_OUT_OF_RANGE,
            "price",
            format!(
                "invalid price: expected a number in [0, 1], got {}",
                shown("price")
            ),
        ));
    }
    let volume = number("volume");
    if volume < 0.0 {
        return Err(ValidationError::at(
            class::NEGATIVE_VOLUME,
            "volume",
            format!(
                "invalid volume: expected a non-negative number, got {}",
                shown("volume")
            ),
        ));
    }

    let raw = str_field(map, "timestamp");
    let timestamp = rfc3339(map, "timestamp")?;
    if timestamp.offset().local_minus_utc() != 0 {
        return Err(ValidationError::at(
            class::BAD_TIMESTAMP,
            "timestamp",
            format!(
                "field \"timestamp\": expected a UTC timestamp (Z or +00:00), got {}",
                quote(raw)
            ),
        ));
    }
    let timestamp = timestamp.with_timezone(&Utc);
    if timestamp.minute() != 0 || timestamp.second() != 0 || timestamp.nanosecond() != 0 {
        return Err(ValidationError::at(
            class::TIMESTAMP_NOT_HOUR_ALIGNED,
            "timestamp",
            format!(
                "field \"timestamp\": expected a timestamp aligned to the hour, got {}",
                quote(raw)
            ),
        ));
    }

    let market_id = str_field(map, "market_id");
    if !is_market_id(market_id) {
        return Err(ValidationError::at(
            class::BAD_MARKET_ID,
            "market_id",
            format!(
                "field \"market_id\": expected \"0x\" followed by 40 hex digits, got {}",
                quote(market_id)
            ),
        ));
    }
    let outcome = match str_field(map, "outcome") {
        "Yes" => Outcome::Yes,
        "No" => Outcome::No,
        other => {
            return Err(ValidationError::at(
                class::BAD_OUTCOME,
                "outcome",
                format!(
                    "field \"outcome\": expected \"Yes\" or \"No\", got {}",
                    quote(other)
                ),
            ));
        }
    };

    Ok(PriceHourly {
        event_id: str_field(map, "event_id").to_owned(),
        market_id: market_id.to_owned(),
        question: str_field(map, "question").to_owned(),
        outcome,
        price,
        volume,
        timestamp,
    })
}

/// Parses an RFC 3339 string field (chrono's parser: `T`, `t` or a space
/// between date and time, `Z` or a numeric offset).
fn rfc3339(map: &Map<String, Value>, name: &str) -> Result<DateTime<FixedOffset>, ValidationError> {
    let raw = str_field(map, name);
    // chrono's reason ("premature end of input", "input contains invalid
    // characters", …) is left out for the same reason as the URL's.
    DateTime::parse_from_rfc3339(raw).map_err(|_| {
        ValidationError::at(
            class::BAD_TIMESTAMP,
            name,
            format!(
                "field \"{name}\": expected an RFC 3339 timestamp, got {}",
                quote(raw)
            ),
        )
    })
}

fn is_market_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 42 && b.starts_with(b"0x") && b[2..].iter().all(u8::is_ascii_hexdigit)
}

/// A small check that `s` is an absolute `http`/`https` URL with a plausible
/// host: `scheme://[userinfo@]host[:port][/path][?query][#fragment]`. It is
/// deliberately not a full WHATWG parser; it rejects what feeds get wrong in
/// practice (relative links, a missing or misspelled scheme, spaces).
pub(crate) fn check_http_url(s: &str) -> Result<(), &'static str> {
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("contains whitespace or control characters");
    }
    if s.bytes().any(|b| {
        matches!(
            b,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
    }) {
        return Err("contains characters not allowed in a URL");
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("not an absolute URL");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("scheme is not http or https");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let port = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else {
            return Err("unterminated IPv6 host");
        };
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("bad IPv6 host");
        }
        if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or("bad host")?)
        }
    } else {
        let (host, port) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if host.is_empty() {
            return Err("no host");
        }
        // A trailing dot (a fully qualified name) is allowed; empty labels are not.
        let labels = host.strip_suffix('.').unwrap_or(host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        };
        if !labels.split('.').all(label_ok) {
            return Err("bad host");
        }
        port
    };
    if let Some(port) = port {
        let digits_ok =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok || port.parse::<u32>().map_or(true, |p| p > 65_535) {
            return Err("bad port");
        }
    }
    Ok(())
}

/// A JSON type in words, for "got ..." without the value.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON type in words, with the value when it is short (a scalar).
fn describe(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({})", quote(s)),
        other => kind(other).to_owned(),
    }
}

/// `s` as a JSON string literal, cut at 80 characters with a `…` marker.
fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    let cut = s.char_indices().nth(MAX_CHARS).map(|(i, _)| i);
    let shown = cut.map_or(s, |i| &s[..i]);
    let mut out = serde_json::to_string(shown).unwrap_or_else(|_| format!("{shown:?}"));
    if cut.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: &str = r#"{"id":"rss-1","title":"Fed holds rates","link":"https://www.reuters.com/markets/us/fed-holds-rates","feed":"reuters-markets","published":"2026-11-01T00:00:17Z","summary":"The Fed held.","tags":["fed","rates"]}"#;
    const PRICE: &str = r#"{"event_id":"ph-1","market_id":"0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0","question":"Will the Fed cut rates in December 2026?","outcome":"Yes","price":0.42,"volume":1200.5,"timestamp":"2026-11-01T05:00:00Z"}"#;

    fn with(base: &str, field: &str, raw: Option<&str>) -> Vec<u8> {
        let mut v: Map<String, Value> = serde_json::from_str(base).unwrap();
        match raw {
            Some(raw) => {
                v.insert(field.to_owned(), serde_json::from_str(raw).unwrap());
            }
            None => {
                v.remove(field);
            }
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn err(p: Pipeline, bytes: &[u8]) -> ValidationError {
        validate(p, bytes, &Limits::default()).expect_err("expected invalid")
    }

    #[test]
    fn valid_records_parse() {
        let Valid::Rss(r) = validate(Pipeline::Rss, RSS.as_bytes(), &Limits::default()).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(r.tags, ["fed", "rates"]);
        assert_eq!(r.feed, "reuters-markets");
        let v = validate(Pipeline::Polymarket, PRICE.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(v.id(), "ph-1");
        assert_eq!(v.pipeline(), Pipeline::Polymarket);
        let Valid::Polymarket(p) = v else {
            panic!("wrong variant")
        };
        assert_eq!(p.outcome, Outcome::Yes);
        assert_eq!(p.price, 0.42);
        assert_eq!(p.timestamp.to_rfc3339(), "2026-11-01T05:00:00+00:00");
    }

    #[test]
    fn oversized_is_checked_first_and_not_parsed() {
        let limits = Limits {
            max_record_bytes: 10,
        };
        let e = validate(Pipeline::Rss, b"\xff\xff not json at all", &limits).unwrap_err();
        assert_eq!(e.class, class::OVERSIZED);
        assert_eq!(e.message, "record is 18 bytes, over the limit of 10 bytes");
        assert!(
            validate(Pipeline::Rss, b"0123456789", &limits)
                .is_err_and(|e| e.class != class::OVERSIZED)
        );
        assert_eq!(Limits::default().max_record_bytes, 1_048_576);
    }

    #[test]
    fn empty_and_whitespace() {
        for input in [&b""[..], b" ", b"\n", b"\r\n\t  "] {
            assert_eq!(err(Pipeline::Rss, input).class, class::EMPTY);
        }
    }

    #[test]
    fn invalid_utf8_reports_the_offset() {
        let e = err(Pipeline::Rss, b"{\"title\":\"caf\xe9 au lait\"}");
        assert_eq!(e.class, class::INVALID_UTF8);
        assert_eq!(e.message, "invalid UTF-8 at byte offset 13 (byte 0xE9)");
        assert!(!e.retryable());
    }

    #[test]
    fn malformed_json_gives_line_and_column() {
        let e = err(Pipeline::Polymarket, &PRICE.as_bytes()[..60]);
        assert_eq!(e.class, class::MALFORMED_JSON);
        assert!(e.message.contains("line 1 column 60"), "{}", e.message);
        assert_eq!(
            err(Pipeline::Rss, br#"{"a":1} {"b":2}"#).class,
            class::MALFORMED_JSON
        );
        assert_eq!(
            err(Pipeline::Rss, b"{'id': 1}").class,
            class::MALFORMED_JSON
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            err(Pipeline::Rss, deep.as_bytes()).class,
            class::MALFORMED_JSON
        );
    }

    #[test]
    fn not_an_object() {
        for (input, got) in [
            ("null", "null"),
            ("[1,2]", "an array"),
            ("\"{\\\"id\\\":1}\"", "a string"),
            ("42", "a number"),
            (" true ", "a boolean"),
        ] {
            let e = err(Pipeline::Polymarket, input.as_bytes());
            assert_eq!(e.class, class::NOT_AN_OBJECT, "{input}");
            assert_eq!(e.message, format!("expected a JSON object, got {got}"));
            assert_eq!(e.field, None);
        }
    }

    #[test]
    fn missing_and_null_fields() {
        let e = err(Pipeline::Rss, &with(RSS, "link", None));
        assert_eq!(
            (e.class, e.field.as_deref()),
            (class::MISSING_FIELD, Some("link"))
        );
        assert_eq!(e.message, "missing field \"link\"");
        let e = err(Pipeline::Polymarket, &with(PRICE, "volume", Some("null")));
        assert_eq!(
            (e.class, e.field.as_deref()),
            (class::NULL_FIELD, Some("volume"))
        );
        assert_eq!(e.message, "field \"volume\" is null");
    }

    #[test]
    fn class_order_does_not_depend_on_key_order() {
        // A wrong type early in the object and a missing field at its end:
        // missing wins.
        let mut bad = with(PRICE, "price", Some("\"0.42\""));
        bad = with(std::str::from_utf8(&bad).unwrap(), "timestamp", None);
        let e = err(Pipeline::Polymarket, &bad);
        assert_eq!(
            (e.class, e.field.as_deref()),
            (class::MISSING_FIELD, Some("timestamp"))
        );
        // Null beats a wrong type.
        let bad = with(RSS, "tags", Some("\"a,b\""));
        let bad = with(std::str::from_utf8(&bad).unwrap(), "summary", Some("null"));
        assert_eq!(err(Pipeline::Rss, &bad).class, class::NULL_FIELD);
        // A wrong type beats a domain rule.
        let bad = with(PRICE, "price", Some("7"));
        let bad = with(std::str::from_utf8(&bad).unwrap(), "volume", Some("\"12\""));
        assert_eq!(err(Pipeline::Polymarket, &bad).class, class::WRONG_TYPE);
    }

    #[test]
    fn wrong_types() {
        let e = err(
            Pipeline::Polymarket,
            &with(PRICE, "price", Some("\"0.42\"")),
        );
        assert_eq!(e.class, class::WRONG_TYPE);
        assert_eq!(e.field.as_deref(), Some("price"));
        assert_eq!(
            e.message,
            r#"field "price": expected a number, got a string ("0.42")"#
        );

        let e = err(Pipeline::Rss, &with(RSS, "tags", Some("\"fed,rates\"")));
        assert_eq!(e.field.as_deref(), Some("tags"));
        assert_eq!(
            e.message,
            r#"field "tags": expected an array of strings, got a string ("fed,rates")"#
        );
        let e = err(Pipeline::Rss, &with(RSS, "tags", Some("[\"fed\", 3]")));
        assert_eq!(
            e.message,
            r#"field "tags": expected an array of strings, got a number (3) at index 1"#
        );
        let e = err(Pipeline::Rss, &with(RSS, "title", Some("true")));
        assert_eq!(
            e.message,
            r#"field "title": expected a string, got a boolean (true)"#
        );
        let e = err(Pipeline::Rss, &with(RSS, "id", Some("{}")));
        assert_eq!(e.message, r#"field "id": expected a string, got an object"#);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = format!("\"{}\"", "é".repeat(500));
        let e = err(Pipeline::Polymarket, &with(PRICE, "price", Some(&long)));
        assert!(e.message.ends_with("\"…)"), "{}", e.message);
        assert!(e.message.chars().count() < 140, "{}", e.message);
    }

    #[test]
    fn empty_ids_and_titles() {
        let e = err(Pipeline::Rss, &with(RSS, "id", Some("\"  \"")));
        assert_eq!(
            (e.class, e.field.as_deref()),
            (class::EMPTY_FIELD, Some("id"))
        );
        assert_eq!(
            err(Pipeline::Polymarket, &with(PRICE, "question", Some("\"\""))).class,
            class::EMPTY_FIELD
        );
        // An empty summary or tag list is fine.
        let ok = with(RSS, "summary", Some("\"\""));
        let ok = with(std::str::from_utf8(&ok).unwrap(), "tags", Some("[]"));
        assert!(validate(Pipeline::Rss, &ok, &Limits::default()).is_ok());
    }

    #[test]
    fn price_and_volume_ranges() {
        let e = err(Pipeline::Polymarket, &with(PRICE, "price", Some("1.7")));
        assert_eq!(e.class, class::PRICE_OUT_OF_RANGE);
        assert_eq!(
            e.message,
            "invalid price: expected a number in [0, 1], got 1.7"
        );
        assert_eq!(
            err(Pipeline::Polymarket, &with(PRICE, "price", Some("-0.01"))).class,
            class::PRICE_OUT_OF_RANGE
        );
        assert_eq!(
            err(Pipeline::Polymarket, &with(PRICE, "price", Some("42"))).class,
            class::PRICE_OUT_OF_RANGE
        );
        for edge in ["0", "1", "0.0", "1.0", "-0.0", "1e-9"] {
            assert!(
                validate(
                    Pipeline::Polymarket,
                    &with(PRICE, "price", Some(edge)),
                    &Limits::default()
                )
                .is_ok(),
                "{edge}"
            );
        }
        let e = err(Pipeline::Polymarket, &with(PRICE, "volume", Some("-3.5")));
        assert_eq!(e.class, class::NEGATIVE_VOLUME);
        assert_eq!(
            e.message,
            "invalid volume: expected a non-negative number, got -3.5"
        );
        assert!(
            validate(
                Pipeline::Polymarket,
                &with(PRICE, "volume", Some("0")),
                &Limits::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn timestamps() {
        for bad in [
            "\"2026-11-01T05:00:00\"",
            "\"Sun, 01 Nov 2026 05:00:00 GMT\"",
            "\"1793509200\"",
            "\"2026-13-01T05:00:00Z\"",
            "\"\"",
        ] {
            let e = err(Pipeline::Polymarket, &with(PRICE, "timestamp", Some(bad)));
            assert_eq!(
                (e.class, e.field.as_deref()),
                (class::BAD_TIMESTAMP, Some("timestamp")),
                "{bad}"
            );
            let e = err(Pipeline::Rss, &with(RSS, "published", Some(bad)));
            assert_eq!(
                (e.class, e.field.as_deref()),
                (class::BAD_TIMESTAMP, Some("published")),
                "{bad}"
            );
        }
        let e = err(
            Pipeline::Polymarket,
            &with(PRICE, "timestamp", Some("\"2026-11-01T06:00:00+01:00\"")),
        );
        assert_eq!(e.class, class::BAD_TIMESTAMP);
        assert!(e.message.contains("UTC"), "{}", e.message);
        for unaligned in [
            "\"2026-11-01T05:23:11Z\"",
            "\"2026-11-01T05:00:01Z\"",
            "\"2026-11-01T05:00:00.250Z\"",
            "\"2026-11-01T05:59:60Z\"",
        ] {
            let e = err(
                Pipeline::Polymarket,
                &with(PRICE, "timestamp", Some(unaligned)),
            );
            assert_eq!(e.class, class::TIMESTAMP_NOT_HOUR_ALIGNED, "{unaligned}");
        }
        for ok in [
            "\"2026-11-01T05:00:00.000Z\"",
            "\"2026-11-01T05:00:00+00:00\"",
            "\"2026-11-01t05:00:00z\"",
        ] {
            assert!(
                validate(
                    Pipeline::Polymarket,
                    &with(PRICE, "timestamp", Some(ok)),
                    &Limits::default()
                )
                .is_ok(),
                "{ok}"
            );
        }
        // RSS items may carry any offset.
        assert!(
            validate(
                Pipeline::Rss,
                &with(RSS, "published", Some("\"2026-11-01T00:00:17-05:00\"")),
                &Limits::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn market_ids_and_outcomes() {
        for bad in [
            "\"5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0\"",
            "\"0x5f2d\"",
            "\"0X5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0\"",
            "\"0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1ag\"",
        ] {
            let e = err(Pipeline::Polymarket, &with(PRICE, "market_id", Some(bad)));
            assert_eq!(
                (e.class, e.field.as_deref()),
                (class::BAD_MARKET_ID, Some("market_id")),
                "{bad}"
            );
        }
        assert!(
            validate(
                Pipeline::Polymarket,
                &with(
                    PRICE,
                    "market_id",
                    Some("\"0x5F2D9C1B0A8E7D6C5B4A39281706F5E4D3C2B1A0\"")
                ),
                &Limits::default()
            )
            .is_ok()
        );
        let e = err(
            Pipeline::Polymarket,
            &with(PRICE, "outcome", Some("\"yes\"")),
        );
        assert_eq!(e.class, class::BAD_OUTCOME);
        assert_eq!(
            e.message,
            r#"field "outcome": expected "Yes" or "No", got "yes""#
        );
    }

    #[test]
    fn urls() {
        for ok in [
            "https://www.reuters.com/markets/us/fed",
            "http://example.com",
            "HTTPS://EXAMPLE.COM/a?b=c#d",
            "https://user@example.com:8443/x",
            "https://[2001:db8::1]:443/x",
            "https://münchen.de/",
            "https://example.com./x",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "www.reuters.com/markets",
            "/markets/us/fed",
            "htps://www.reuters.com/x",
            "ftp://example.com/x",
            "https://",
            "https:///x",
            "https://exa mple.com",
            "https://example..com",
            "https://.example.com",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://[::1/x",
            "",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad}");
        }
        let e = err(
            Pipeline::Rss,
            &with(RSS, "link", Some("\"/markets/us/fed\"")),
        );
        assert_eq!(
            (e.class, e.field.as_deref()),
            (class::BAD_URL, Some("link"))
        );
        assert_eq!(
            e.message,
            r#"field "link": expected an absolute http(s) URL, got "/markets/us/fed""#
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_duplicates_keep_the_last() {
        let extra = with(RSS, "lang", Some("\"en\""));
        assert!(validate(Pipeline::Rss, &extra, &Limits::default()).is_ok());
        let dup = PRICE.replacen("{", "{\"price\":\"x\",", 1);
        assert!(validate(Pipeline::Polymarket, dup.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn record_id_survives_invalid_fields() {
        let bad = with(PRICE, "price", Some("\"0.42\""));
        assert_eq!(
            record_id(Pipeline::Polymarket, &bad).as_deref(),
            Some("ph-1")
        );
        assert_eq!(
            record_id(Pipeline::Rss, RSS.as_bytes()).as_deref(),
            Some("rss-1")
        );
        assert_eq!(record_id(Pipeline::Rss, PRICE.as_bytes()), None);
        assert_eq!(record_id(Pipeline::Rss, &with(RSS, "id", Some("7"))), None);
        assert_eq!(record_id(Pipeline::Rss, b"[\"id\"]"), None);
        assert_eq!(record_id(Pipeline::Rss, &RSS.as_bytes()[..40]), None);
        assert_eq!(record_id(Pipeline::Rss, b"\xff"), None);
    }

    #[test]
    fn serde_round_trip_of_valid_records() {
        for (p, line) in [(Pipeline::Rss, RSS), (Pipeline::Polymarket, PRICE)] {
            let v = validate(p, line.as_bytes(), &Limits::default()).unwrap();
            let again = match &v {
                Valid::Rss(r) => serde_json::to_vec(r).unwrap(),
                Valid::Polymarket(r) => serde_json::to_vec(r).unwrap(),
            };
            assert_eq!(validate(p, &again, &Limits::default()).unwrap(), v);
        }
    }
}
