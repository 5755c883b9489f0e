//! Static text the generator draws from: feeds, headlines and markets.
//!
//! Invented but realistic. A few entries hold non-ASCII text and quotes so
//! that generated lines exercise UTF-8 and JSON escaping.

/// An RSS source.
pub(crate) struct Feed {
    /// Feed name, the `feed` field.
    pub name: &'static str,
    /// Site the links point to.
    pub site: &'static str,
    /// First path segment of its links.
    pub section: &'static str,
    /// UTC offset its `published` times carry (`"Z"` or `±hh:mm`), and that
    /// offset in seconds.
    pub offset: (&'static str, i64),
}

pub(crate) const FEEDS: &[Feed] = &[
    Feed {
        name: "reuters-markets",
        site: "www.reuters.com",
        section: "markets",
        offset: ("Z", 0),
    },
    Feed {
        name: "bloomberg-politics",
        site: "www.bloomberg.com",
        section: "news/articles",
        offset: ("Z", 0),
    },
    Feed {
        name: "coindesk",
        site: "www.coindesk.com",
        section: "markets",
        offset: ("Z", 0),
    },
    Feed {
        name: "ap-politics",
        site: "apnews.com",
        section: "article",
        offset: ("-05:00", -5 * 3600),
    },
    Feed {
        name: "ft-markets",
        site: "www.ft.com",
        section: "content",
        offset: ("+00:00", 0),
    },
    Feed {
        name: "politico",
        site: "www.politico.com",
        section: "news",
        offset: ("-05:00", -5 * 3600),
    },
    Feed {
        name: "the-block",
        site: "www.theblock.co",
        section: "post",
        offset: ("Z", 0),
    },
    Feed {
        name: "wsj-economy",
        site: "www.wsj.com",
        section: "economy",
        offset: ("Z", 0),
    },
    Feed {
        name: "handelsblatt-finanzen",
        site: "www.handelsblatt.com",
        section: "finanzen",
        offset: ("+01:00", 3600),
    },
];

/// A news item.
pub(crate) struct Headline {
    pub title: &'static str,
    /// URL slug of the title.
    pub slug: &'static str,
    pub summary: &'static str,
    /// One to three tags.
    pub tags: &'static [&'static str],
}

pub(crate) const HEADLINES: &[Headline] = &[
    Headline {
        title: "Fed holds rates steady, signals patience on cuts",
        slug: "fed-holds-rates-steady-signals-patience-on-cuts",
        summary: "The Federal Reserve left its benchmark rate unchanged and said it needs more evidence that inflation is cooling before easing.",
        tags: &["fed", "rates"],
    },
    Headline {
        title: "Powell: \"no rush\" to cut as inflation stays sticky",
        slug: "powell-no-rush-to-cut-as-inflation-stays-sticky",
        summary: "Fed Chair Jerome Powell said policymakers can be patient, pushing back on market bets for a December cut.",
        tags: &["fed", "rates", "inflation"],
    },
    Headline {
        title: "Bitcoin tops $120,000 as ETF inflows accelerate",
        slug: "bitcoin-tops-120000-as-etf-inflows-accelerate",
        summary: "Spot bitcoin ETFs took in more than $1 billion in a single session, the most since their launch.",
        tags: &["crypto", "bitcoin"],
    },
    Headline {
        title: "Ether slides 6% after major exchange halts withdrawals",
        slug: "ether-slides-6-after-major-exchange-halts-withdrawals",
        summary: "The exchange blamed a wallet upgrade; traders moved funds to rival venues.",
        tags: &["crypto", "ethereum"],
    },
    Headline {
        title: "Polymarket odds of a December rate cut fall below 40%",
        slug: "polymarket-odds-of-a-december-rate-cut-fall-below-40",
        summary: "Prediction market traders trimmed bets on easing after stronger-than-expected payrolls.",
        tags: &["polymarket", "fed", "rates"],
    },
    Headline {
        title: "US payrolls beat forecasts; unemployment steady at 4.1%",
        slug: "us-payrolls-beat-forecasts-unemployment-steady",
        summary: "Employers added 210,000 jobs last month, above the 165,000 economists expected.",
        tags: &["economy", "jobs"],
    },
    Headline {
        title: "CPI rises 0.3% in October, core inflation firm",
        slug: "cpi-rises-0-3-in-october-core-inflation-firm",
        summary: "Shelter and services kept core prices elevated, complicating the path to rate cuts.",
        tags: &["inflation", "economy"],
    },
    Headline {
        title: "Oil jumps as OPEC+ extends output cuts into 2027",
        slug: "oil-jumps-as-opec-extends-output-cuts-into-2027",
        summary: "Brent crude rose above $85 a barrel after the group surprised markets with a longer extension.",
        tags: &["oil", "commodities"],
    },
    Headline {
        title: "Senate passes stopgap bill, averting government shutdown",
        slug: "senate-passes-stopgap-bill-averting-government-shutdown",
        summary: "The measure funds the government through January; the House is expected to follow.",
        tags: &["politics", "congress"],
    },
    Headline {
        title: "Governor race tightens in final week, new poll shows",
        slug: "governor-race-tightens-in-final-week-new-poll-shows",
        summary: "The two candidates are within the margin of error, according to a survey of likely voters.",
        tags: &["election", "politics"],
    },
    Headline {
        title: "S&P 500 closes at record as tech rally broadens",
        slug: "sp-500-closes-at-record-as-tech-rally-broadens",
        summary: "Chipmakers led gains while small caps also advanced on hopes of lower borrowing costs.",
        tags: &["equities", "markets"],
    },
    Headline {
        title: "Treasury yields climb after weak 30-year auction",
        slug: "treasury-yields-climb-after-weak-30-year-auction",
        summary: "The 10-year yield rose 8 basis points as demand for long bonds faded.",
        tags: &["bonds", "rates"],
    },
    Headline {
        title: "SEC approves rule changes for prediction market contracts",
        slug: "sec-approves-rule-changes-for-prediction-market-contracts",
        summary: "The decision clears the way for more event contracts on US-regulated venues.",
        tags: &["regulation", "polymarket"],
    },
    Headline {
        title: "EZB lässt Leitzins unverändert – Märkte erwarten Senkung im Dezember",
        slug: "ezb-laesst-leitzins-unveraendert",
        summary: "Die Europäische Zentralbank hält den Einlagensatz bei 2,0 %; Händler setzen auf eine Senkung um 25 Basispunkte.",
        tags: &["ecb", "rates", "europe"],
    },
    Headline {
        title: "Euro rises to $1.12 — strongest since 2021",
        slug: "euro-rises-to-1-12-strongest-since-2021",
        summary: "The single currency gained after eurozone PMI data beat expectations (50.8 vs 49.9).",
        tags: &["fx", "europe"],
    },
    Headline {
        title: "Stablecoin supply hits $300 billion as payments adoption grows",
        slug: "stablecoin-supply-hits-300-billion",
        summary: "Tether and USDC account for most of the growth, data from DefiLlama show.",
        tags: &["crypto", "stablecoins"],
    },
    Headline {
        title: "Gold hits all-time high on central bank buying",
        slug: "gold-hits-all-time-high-on-central-bank-buying",
        summary: "Spot gold traded above $3,000 an ounce for the first time.",
        tags: &["gold", "commodities"],
    },
    Headline {
        title: "Supreme Court to hear tariff challenge in January",
        slug: "supreme-court-to-hear-tariff-challenge-in-january",
        summary: "The case could decide the limits of emergency powers over trade.",
        tags: &["politics", "trade"],
    },
];

/// A Polymarket market. Its id is derived from its position in [`MARKETS`].
pub(crate) const MARKETS: &[&str] = &[
    "Will the Fed cut rates in December 2026?",
    "Will Bitcoin reach $150,000 by December 31, 2026?",
    "Will Ethereum trade above $5,000 on December 31, 2026?",
    "Will US CPI inflation be above 3.0% in November 2026?",
    "Will the US unemployment rate be 4.5% or higher in December 2026?",
    "Will there be a US government shutdown before January 31, 2027?",
    "Will the S&P 500 close 2026 above 7,000?",
    "Will the ECB cut rates in December 2026?",
    "Will WTI crude oil hit $100 in 2026?",
    "Will the Democrats win the House in the 2026 midterms?",
    "Will gold close above $3,500 on December 31, 2026?",
    "Will the US enter a recession in 2026?",
];
