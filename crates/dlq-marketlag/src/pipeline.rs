//! The two MarketLag pipelines and the Kafka topics they write to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A MarketLag pipeline: which producer a record comes from.
///
/// Serialized as its short [`name`](Pipeline::name) (`"rss"`, `"polymarket"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// RSS news events, topic `rss.events`.
    Rss,
    /// Hourly Polymarket prices, topic `polymarket.price_hourly`.
    Polymarket,
}

impl Pipeline {
    /// Both pipelines, in a stable order.
    pub const ALL: [Pipeline; 2] = [Pipeline::Rss, Pipeline::Polymarket];

    /// The short name: `"rss"` or `"polymarket"`.
    pub const fn name(self) -> &'static str {
        match self {
            Pipeline::Rss => "rss",
            Pipeline::Polymarket => "polymarket",
        }
    }

    /// The primary Kafka topic: `"rss.events"` or `"polymarket.price_hourly"`.
    pub const fn topic(self) -> &'static str {
        match self {
            Pipeline::Rss => "rss.events",
            Pipeline::Polymarket => "polymarket.price_hourly",
        }
    }

    /// The dead letter topic, `dlq.<topic>`: `"dlq.rss.events"` or
    /// `"dlq.polymarket.price_hourly"`.
    pub const fn dlq_topic(self) -> &'static str {
        match self {
            Pipeline::Rss => "dlq.rss.events",
            Pipeline::Polymarket => "dlq.polymarket.price_hourly",
        }
    }

    /// The JSON field that holds a record's unique id: `"id"` for RSS events,
    /// `"event_id"` for Polymarket prices (see [`crate::record_id`]).
    pub const fn id_field(self) -> &'static str {
        match self {
            Pipeline::Rss => "id",
            Pipeline::Polymarket => "event_id",
        }
    }

    /// The pipeline whose primary topic is exactly `topic` (topic names are
    /// case-sensitive, as in Kafka). A DLQ topic is not a primary topic, so
    /// `from_topic("dlq.rss.events")` is `None`.
    pub fn from_topic(topic: &str) -> Option<Pipeline> {
        Pipeline::ALL.into_iter().find(|p| p.topic() == topic)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of [`Pipeline::from_str`]: the text names no pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown pipeline {0:?}: expected \"rss\", \"polymarket\", \"rss.events\" or \"polymarket.price_hourly\""
)]
pub struct UnknownPipeline(pub String);

impl FromStr for Pipeline {
    type Err = UnknownPipeline;

    /// Accepts the short name (ASCII case-insensitive, for command lines) or
    /// the exact primary topic name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pipeline::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .or_else(|| Pipeline::from_topic(s))
            .ok_or_else(|| UnknownPipeline(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_dlq_topics() {
        assert_eq!(Pipeline::Rss.topic(), "rss.events");
        assert_eq!(Pipeline::Polymarket.topic(), "polymarket.price_hourly");
        for p in Pipeline::ALL {
            assert_eq!(p.dlq_topic(), format!("dlq.{}", p.topic()));
            assert_eq!(Pipeline::from_topic(p.topic()), Some(p));
            assert_eq!(Pipeline::from_topic(p.dlq_topic()), None);
        }
    }

    #[test]
    fn parses_names_and_topics() {
        for p in Pipeline::ALL {
            assert_eq!(p.name().parse::<Pipeline>(), Ok(p));
            assert_eq!(p.topic().parse::<Pipeline>(), Ok(p));
            assert_eq!(p.to_string().parse::<Pipeline>(), Ok(p));
        }
        assert_eq!("RSS".parse::<Pipeline>(), Ok(Pipeline::Rss));
        let err = "kafka".parse::<Pipeline>().unwrap_err();
        assert!(err.to_string().contains("\"kafka\""), "{err}");
        assert!("".parse::<Pipeline>().is_err());
        assert!("dlq.rss.events".parse::<Pipeline>().is_err());
    }

    #[test]
    fn serde_uses_the_short_name() {
        assert_eq!(
            serde_json::to_string(&Pipeline::Polymarket).unwrap(),
            "\"polymarket\""
        );
        let p: Pipeline = serde_json::from_str("\"rss\"").unwrap();
        assert_eq!(p, Pipeline::Rss);
    }
}
