"""send_to_dlq: the seed Lambda's function, against the real broker."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Dict, List

import pytest

import dlq
from conftest import closed_port, pending


def lambda_handler(event: Dict[str, Any], context: Any) -> Dict[str, int]:
    """The seed's Lambda shape: a confluent_kafka config dict with SASL
    settings from the environment, and every failed record to the DLQ."""
    config = {
        "bootstrap.servers": os.environ["MARKETLAG_KAFKA_BOOTSTRAP"],
        # The local broker speaks PLAINTEXT; in AWS this is SASL_SSL.
        "security.protocol": os.environ.get("MARKETLAG_KAFKA_PROTOCOL", "SASL_SSL"),
        "sasl.mechanisms": "PLAIN",
        "sasl.username": os.environ["MARKETLAG_KAFKA_USERNAME"],
        "sasl.password": os.environ["MARKETLAG_KAFKA_PASSWORD"],
    }
    failed: List[Dict[str, Any]] = []
    error: Exception = RuntimeError("no error")
    for record in event["records"]:
        try:
            float(record["price"])
        except ValueError as e:
            failed.append(record)
            error = e
    if failed:
        dlq.send_to_dlq(
            event["dlq_topic"], failed, error=error, config=config, dlq_prefix=event["prefix"]
        )
    return {"failed": len(failed)}


def test_the_seed_lambda_lands_failed_records_that_dlq_stats_counts_and_inspect_shows(
    bootstrap: str, prefix: str, run_dlq: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKETLAG_KAFKA_BOOTSTRAP", bootstrap)
    monkeypatch.setenv("MARKETLAG_KAFKA_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("MARKETLAG_KAFKA_USERNAME", "marketlag")
    monkeypatch.setenv("MARKETLAG_KAFKA_PASSWORD", "hunter2-canary")
    dlq_topic = prefix + "rss.events"
    records = [
        {"event_id": f"evt-{i}", "title": "Fed holds rates", "price": "N/A" if i % 2 else "0.5"}
        for i in range(20)
    ]
    now = datetime.now(timezone.utc)
    before = now.replace(microsecond=now.microsecond // 1000 * 1000)  # envelopes keep ms

    assert lambda_handler({"records": records, "dlq_topic": dlq_topic, "prefix": prefix}, None) == {
        "failed": 10
    }

    stats = run_dlq(prefix, "stats", "--format", "json")
    assert pending(stats, dlq_topic) == 10
    shown = run_dlq(prefix, "inspect", "--dlq", dlq_topic, "--format", "ndjson")
    envelopes = [r["record"] for r in shown]
    assert sorted(e["original_record"]["event_id"] for e in envelopes) == sorted(
        r["event_id"] for r in records if r["price"] == "N/A"
    )
    for e in envelopes:
        # The seed's three fields, as the seed's consumers read them.
        assert e["original_record"]["price"] == "N/A"
        assert e["error"] == "could not convert string to float: 'N/A'"
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        assert before <= ts <= datetime.now(timezone.utc)
        # dlq's metadata beside them: a replay goes back to rss.events.
        assert e["dlq"]["source"]["topic"] == "rss.events"
        assert e["dlq"]["error_class"] == "produce.value_error"
        assert e["dlq"]["stage"] == "produce"


def test_records_of_every_kind_keep_their_bytes(config: Dict[str, Any], prefix: str, run_dlq: Any) -> None:
    dlq_topic = prefix + "polymarket.price_hourly"
    records = [{"market_id": "0xabc", "price": 1.7}, b"\xff\x00not utf-8", "plain text", [1, 2]]

    report = dlq.send_to_dlq(dlq_topic, records, error="price out of range", config=config, dlq_prefix=prefix)

    assert (report.records, report.dead_lettered, report.spooled, report.failed) == (4, 4, 0, 0)
    exported = run_dlq(prefix, "export", "--dlq", dlq_topic, raw=True).splitlines()
    by_id = {dlq.envelope.decode(line).id: dlq.envelope.decode(line) for line in exported}
    assert [by_id[i].payload for i in report.ids] == [
        b'{"market_id":"0xabc","price":1.7}',
        b"\xff\x00not utf-8",
        b"plain text",
        b"[1,2]",
    ]
    assert by_id[report.ids[0]].original_record == records[0]


def test_a_dlq_topic_outside_the_prefix_is_refused_before_anything_is_written(
    config: Dict[str, Any],
) -> None:
    with pytest.raises(dlq.ConfigError, match="must start with the DLQ prefix"):
        dlq.send_to_dlq("rss-events-dlq", [{"a": 1}], error="x", config=config)


def test_with_the_cluster_unreachable_everything_is_spooled_and_dlq_spool_flush_moves_it_once(
    tmp_path: Any, prefix: str, run_dlq: Any
) -> None:
    spool = tmp_path / "spool.db"
    down = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    dlq_topic = prefix + "rss.events"
    records = [{"event_id": f"evt-{i}"} for i in range(7)]

    report = dlq.send_to_dlq(
        dlq_topic, records, error="downstream 503", config=down, spool=spool, timeout=1.0, dlq_prefix=prefix
    )

    assert (report.dead_lettered, report.spooled, report.failed) == (0, 7, 0)
    assert report.errors, "says why the DLQ could not be written"
    assert dlq.spool_pending(spool) == 7
    flushed = run_dlq(prefix, "spool", "flush", "--spool", f"sqlite://{spool}", "--format", "json")
    assert (flushed["flushed"], flushed["appended"], flushed["pending"]) == (7, 7, 0)
    again = run_dlq(prefix, "spool", "flush", "--spool", f"sqlite://{spool}", "--format", "json", expect=1)
    assert again["flushed"] == 0, "nothing moves twice"
    assert pending(run_dlq(prefix, "stats", "--format", "json"), dlq_topic) == 7
    shown = run_dlq(prefix, "inspect", "--dlq", dlq_topic, "--format", "ndjson")
    assert sorted(r["record"]["original_record"]["event_id"] for r in shown) == sorted(
        r["event_id"] for r in records
    )


def test_a_later_send_moves_what_an_earlier_one_spooled(
    tmp_path: Any, config: Dict[str, Any], prefix: str, run_dlq: Any
) -> None:
    spool = tmp_path / "spool.db"
    down = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    dlq_topic = prefix + "rss.events"
    dlq.send_to_dlq(dlq_topic, [{"n": 1}, {"n": 2}], error="e", config=down, spool=spool, timeout=1.0, dlq_prefix=prefix)

    report = dlq.send_to_dlq(dlq_topic, [{"n": 3}], error="e", config=config, spool=spool, dlq_prefix=prefix)

    assert (report.dead_lettered, report.spool_flushed, report.spool_pending) == (1, 2, 0)
    assert pending(run_dlq(prefix, "stats", "--format", "json"), dlq_topic) == 3


def test_the_python_flush_spool_moves_spooled_records_once(
    tmp_path: Any, config: Dict[str, Any], prefix: str, run_dlq: Any
) -> None:
    spool = tmp_path / "spool.db"
    down = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    dlq_topic = prefix + "rss.events"
    dlq.send_to_dlq(dlq_topic, [{"n": i} for i in range(5)], error="e", config=down, spool=spool, timeout=1.0, dlq_prefix=prefix)

    first = dlq.flush_spool(spool, config, dlq_prefix=prefix)
    second = dlq.flush_spool(spool, config, dlq_prefix=prefix)

    assert (first.flushed, first.appended, first.pending) == (5, 5, 0)
    assert second.flushed == 0
    assert pending(run_dlq(prefix, "stats", "--format", "json"), dlq_topic) == 5


def test_without_a_spool_an_unreachable_cluster_raises_delivery_error_with_the_report(prefix: str) -> None:
    down = {
        "bootstrap.servers": f"127.0.0.1:{closed_port()}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "marketlag",
        "sasl.password": "hunter2-canary",
    }

    with pytest.raises(dlq.DeliveryError) as raised:
        dlq.send_to_dlq(prefix + "rss.events", [{"n": 1}, {"n": 2}], error="e", config=down, timeout=1.0, dlq_prefix=prefix)

    assert raised.value.report.failed == 2
    assert "2 of 2 records" in str(raised.value)
    assert "hunter2-canary" not in str(raised.value)
    assert "hunter2-canary" not in repr(raised.value.report.errors)


def test_send_to_dlq_leaves_no_thread_running(config: Dict[str, Any], prefix: str) -> None:
    before = len(os.listdir("/proc/self/task"))
    dlq.send_to_dlq(prefix + "rss.events", [{"n": 1}], error="e", config=config, dlq_prefix=prefix)
    assert len(os.listdir("/proc/self/task")) == before
