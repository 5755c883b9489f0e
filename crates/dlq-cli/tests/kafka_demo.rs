//! `dlq demo --kafka` on the real broker: the whole loop on the MarketLag
//! topics, every record accounted for, and `dlq stats` agreeing with it.

mod common;

use common::kafka;
use serde_json::Value;
use std::process::Command;

#[test]
fn kafka_demo_loses_nothing_and_stats_agree() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    // The demo needs fresh MarketLag topics; these belong to this test.
    // The ledger goes too: its entries name (DLQ, id, partition, offset),
    // which a recreated DLQ topic would reuse (a known limitation).
    kafka::delete_topics(
        &bootstrap,
        &[
            "dlq.ledger",
            "dlq.blobs",
            "rss.events",
            "rss.events.processed",
            "dlq.rss.events",
            "polymarket.price_hourly",
            "polymarket.price_hourly.processed",
            "dlq.polymarket.price_hourly",
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args([
            "--no-progress",
            "--format",
            "json",
            "demo",
            "--records",
            "4000",
            "--kafka",
            &bootstrap,
        ])
        .env_remove("DLQ_STORE")
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["records_in"], 8000);
    assert_eq!(v["lost"], 0, "{v:#}");
    assert_eq!(v["duplicates"], 0, "{v:#}");
    assert!(v["replayed"].as_u64().expect("replayed") > 0);
    let (delivered, pending, parked) = (
        v["delivered"].as_u64().expect("delivered"),
        v["pending"].as_u64().expect("pending"),
        v["parked"].as_u64().expect("parked"),
    );
    assert_eq!(delivered + pending + parked, 8000, "{v:#}");
    let stats = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args([
            "--store",
            &format!("kafka://{bootstrap}"),
            "--format",
            "json",
            "stats",
        ])
        .env_remove("DLQ_STORE")
        .output()
        .expect("stats");
    let s: Value = serde_json::from_slice(&stats.stdout).expect("stats json");
    for dlq in ["dlq.rss.events", "dlq.polymarket.price_hourly"] {
        let row = s["dlqs"]
            .as_array()
            .expect("dlqs")
            .iter()
            .find(|d| d["dlq"] == dlq)
            .unwrap_or_else(|| panic!("{dlq} missing from stats"));
        assert!(
            v["dlqs"][dlq].as_u64().expect("demo count") > 0,
            "{dlq} is empty"
        );
        assert_eq!(
            row["pending"], v["dlqs"][dlq],
            "{dlq}: stats disagree with the demo"
        );
    }
}
