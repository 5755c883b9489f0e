//! The record types of the two pipelines, as [`crate::validate`] returns them.
//!
//! Deserializing with serde alone checks types but not the domain rules (a
//! price in [0, 1], an hour-aligned timestamp, an http(s) link, ...): use
//! [`crate::validate`] on raw bytes to get a checked record and a precise
//! error class.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

/// A news item from an RSS feed, as pushed to `rss.events`.
///
/// ```json
/// {"id":"rss-4f0c2b9a7d31e685","title":"Fed holds rates steady, signals patience on cuts",
///  "link":"https://www.reuters.com/markets/us/fed-holds-rates-steady-7d31e685",
///  "feed":"reuters-markets","published":"2026-11-01T00:00:17Z",
///  "summary":"The Federal Reserve left its benchmark rate unchanged ...","tags":["fed","rates"]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssEvent {
    /// Unique id of the item (non-empty).
    pub id: String,
    /// Headline (non-empty).
    pub title: String,
    /// Absolute `http`/`https` URL of the article.
    pub link: String,
    /// Name of the source feed, e.g. `reuters-markets` (non-empty).
    pub feed: String,
    /// Publication time, RFC 3339, any UTC offset.
    pub published: DateTime<FixedOffset>,
    /// Short summary (may be empty).
    pub summary: String,
    /// Topic tags (may be empty).
    pub tags: Vec<String>,
}

/// The outcome a Polymarket price is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The "Yes" share.
    Yes,
    /// The "No" share.
    No,
}

impl Outcome {
    /// `"Yes"` or `"No"`, as on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Yes => "Yes",
            Outcome::No => "No",
        }
    }
}

/// The hourly price of one outcome of a Polymarket market, as pushed to
/// `polymarket.price_hourly`.
///
/// ```json
/// {"event_id":"ph-9b1e0c4d2a7f3e58","market_id":"0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0",
///  "question":"Will the Fed cut rates in December 2026?","outcome":"Yes",
///  "price":0.415,"volume":1832210.5,"timestamp":"2026-11-01T05:00:00Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceHourly {
    /// Unique id of this price point (non-empty).
    pub event_id: String,
    /// The market's id: `0x` followed by 40 hex digits.
    pub market_id: String,
    /// The market's question (non-empty).
    pub question: String,
    /// Which outcome this price is for.
    pub outcome: Outcome,
    /// Price of the outcome's share, in [0, 1] (an implied probability).
    pub price: f64,
    /// Traded volume in USDC, non-negative.
    pub volume: f64,
    /// The hour this price is for: UTC, minutes, seconds and fractions zero.
    pub timestamp: DateTime<Utc>,
}
