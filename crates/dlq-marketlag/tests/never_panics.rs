//! Property tests: `validate` and `record_id` never panic and always answer
//! with a known class; valid records round-trip through serde and
//! `validate`.

use chrono::{DateTime, FixedOffset, Utc};
use dlq_marketlag::{
    GeneratorConfig, Limits, Outcome, Pipeline, PriceHourly, RssEvent, Valid, class, generate,
    record_id, validate,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const RSS_FIELDS: &[&str] = &[
    "id",
    "title",
    "link",
    "feed",
    "published",
    "summary",
    "tags",
];
const PRICE_FIELDS: &[&str] = &[
    "event_id",
    "market_id",
    "question",
    "outcome",
    "price",
    "volume",
    "timestamp",
];

fn pipeline() -> impl Strategy<Value = Pipeline> {
    prop_oneof![Just(Pipeline::Rss), Just(Pipeline::Polymarket)]
}

/// Runs both functions and checks what any answer must satisfy.
fn check(p: Pipeline, bytes: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let id = record_id(p, bytes);
    match validate(p, bytes, limits) {
        Ok(valid) => {
            prop_assert_eq!(valid.pipeline(), p);
            prop_assert_eq!(id.as_deref(), Some(valid.id()));
        }
        Err(err) => {
            prop_assert!(
                class::VALIDATION.contains(&err.class),
                "unknown class {}",
                err.class
            );
            prop_assert!(!err.message.is_empty());
            prop_assert!(!err.retryable());
            if let Some(field) = &err.field {
                let fields = match p {
                    Pipeline::Rss => RSS_FIELDS,
                    Pipeline::Polymarket => PRICE_FIELDS,
                };
                prop_assert!(fields.contains(&field.as_str()), "unknown field {}", field);
            }
        }
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0.0f64..=1.0).prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        Just(json!("2026-11-01T05:00:00Z")),
        Just(json!("https://www.reuters.com/markets/x")),
        Just(json!("0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0")),
        Just(json!("Yes")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with some of the real field names, holding any values.
fn record_like() -> impl Strategy<Value = (Pipeline, Vec<u8>)> {
    pipeline().prop_flat_map(|p| {
        let names = match p {
            Pipeline::Rss => RSS_FIELDS,
            Pipeline::Polymarket => PRICE_FIELDS,
        };
        let fields = names
            .iter()
            .map(|name| (Just(*name), prop::option::weighted(0.9, json_value())))
            .collect::<Vec<_>>();
        fields.prop_map(move |fields| {
            let map: Map<String, Value> = fields
                .into_iter()
                .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v)))
                .collect();
            (
                p,
                serde_json::to_vec(&Value::Object(map)).unwrap_or_default(),
            )
        })
    })
}

fn valid_rss() -> impl Strategy<Value = RssEvent> {
    (
        "[a-z0-9][a-z0-9-]{0,30}",
        "[A-Za-z][\\PC]{0,60}",
        "[a-z]{1,10}(\\.[a-z]{2,5}){1,2}",
        "(/[A-Za-z0-9._~%-]{0,12}){0,4}",
        "[a-z][a-z-]{0,20}",
        0i64..4_102_444_800,
        -(23 * 60 + 59)..=(23 * 60 + 59i32),
        "[\\PC]{0,80}",
        prop::collection::vec("[\\PC]{0,12}", 0..5),
    )
        .prop_map(
            |(id, title, host, path, feed, secs, offset_min, summary, tags)| RssEvent {
                id,
                title,
                link: format!("https://{host}{path}"),
                feed,
                published: DateTime::<Utc>::from_timestamp(secs, 0)
                    .unwrap_or_default()
                    .with_timezone(
                        &FixedOffset::east_opt(offset_min * 60)
                            .unwrap_or(FixedOffset::east_opt(0).unwrap()),
                    ),
                summary,
                tags,
            },
        )
}

fn valid_price() -> impl Strategy<Value = PriceHourly> {
    (
        "[a-z0-9][a-z0-9-]{0,30}",
        "[0-9a-fA-F]{40}",
        "[A-Za-z][\\PC]{0,80}",
        any::<bool>(),
        0.0f64..=1.0,
        0.0f64..1e12,
        0i64..1_139_567,
    )
        .prop_map(
            |(event_id, hex, question, yes, price, volume, hour)| PriceHourly {
                event_id,
                market_id: format!("0x{hex}"),
                question,
                outcome: if yes { Outcome::Yes } else { Outcome::No },
                price,
                volume,
                timestamp: DateTime::<Utc>::from_timestamp(hour * 3600, 0).unwrap_or_default(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(p in pipeline(), bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check(p, &bytes, &Limits::default())?;
    }

    #[test]
    fn never_panics_on_json_ish_text(p in pipeline(), text in "[\\[\\]{}\":,0-9a-zA-Z .+\\-\\\\\u{e9}\u{1f600}\t\r\n]{0,300}") {
        check(p, text.as_bytes(), &Limits::default())?;
    }

    #[test]
    fn never_panics_on_record_like_objects((p, bytes) in record_like()) {
        check(p, &bytes, &Limits::default())?;
    }

    #[test]
    fn never_panics_on_mutated_generated_lines(
        p in pipeline(),
        seed in any::<u64>(),
        index in 0usize..200,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let config = GeneratorConfig::new(p, 200, seed);
        let mut line = generate(&config).nth(index).map(|r| r.line).unwrap_or_default();
        for (at, byte, kind) in edits {
            if line.is_empty() {
                break;
            }
            let i = at.index(line.len());
            match kind {
                0 => line[i] = byte,
                1 => line.insert(i, byte),
                _ => line.truncate(i),
            }
        }
        check(p, &line, &Limits::default())?;
    }

    #[test]
    fn oversized_wins_over_everything(p in pipeline(), bytes in prop::collection::vec(any::<u8>(), 1..256), max in 0usize..256) {
        let limits = Limits { max_record_bytes: max };
        let verdict = validate(p, &bytes, &limits);
        if bytes.len() > max {
            prop_assert_eq!(verdict.map_err(|e| e.class), Err(class::OVERSIZED));
        } else {
            check(p, &bytes, &limits)?;
        }
    }

    #[test]
    fn valid_rss_round_trips(event in valid_rss()) {
        let bytes = serde_json::to_vec(&event).unwrap_or_default();
        let verdict = validate(Pipeline::Rss, &bytes, &Limits::default());
        prop_assert_eq!(verdict, Ok(Valid::Rss(event)), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn valid_prices_round_trip(price in valid_price()) {
        let bytes = serde_json::to_vec(&price).unwrap_or_default();
        let verdict = validate(Pipeline::Polymarket, &bytes, &Limits::default());
        let Ok(Valid::Polymarket(back)) = verdict else {
            return Err(TestCaseError::fail(format!("{verdict:?} for {}", String::from_utf8_lossy(&bytes))));
        };
        // serde_json parses floats fast, not exactly (no `float_roundtrip`
        // feature): allow one unit in the last place.
        let close = |a: f64, b: f64| (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs());
        prop_assert!(close(back.price, price.price) && close(back.volume, price.volume), "{back:?} vs {price:?}");
        prop_assert_eq!(PriceHourly { price: price.price, volume: price.volume, ..back }, price);
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_classified() {
    let deep = format!("{{\"id\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let err = validate(Pipeline::Rss, deep.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(err.class, class::MALFORMED_JSON);
    assert!(err.message.contains("recursion limit"), "{}", err.message);
    assert_eq!(record_id(Pipeline::Rss, deep.as_bytes()), None);

    let huge = br#"{"event_id":"ph-1","price":1e400}"#;
    assert_eq!(
        validate(Pipeline::Polymarket, huge, &Limits::default())
            .unwrap_err()
            .class,
        class::MALFORMED_JSON
    );
}
