"""dlq.GuardedProducer against the real broker."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict

import pytest

import dlq
from conftest import closed_port, pending


def tasks() -> int:
    """Threads of this process, native ones included."""
    return len(os.listdir("/proc/self/task"))


def test_records_to_an_existing_topic_are_delivered(
    config: Dict[str, Any], prefix: str, create_topic: Any
) -> None:
    topic = create_topic()
    with dlq.GuardedProducer(config, dlq_prefix=prefix) as p:
        for i in range(100):
            p.produce(topic, {"event_id": f"evt-{i}"}, key=f"k{i}", headers=[("trace-id", b"t1")])
        report = p.flush()
    assert (report.sent, report.delivered, report.dead_lettered, report.failed) == (100, 100, 0, 0)


def test_records_to_an_unknown_topic_go_to_the_dlq_with_their_error(
    config: Dict[str, Any], prefix: str, run_dlq: Any
) -> None:
    topic = f"py-missing-{prefix[5:-1]}"
    with dlq.GuardedProducer(config, dlq_prefix=prefix, delivery_timeout=5.0) as p:
        for i in range(3):
            p.produce(topic, {"n": i}, key=b"\x00key", headers={"trace-id": "abc"})
        report = p.flush()

    assert (report.sent, report.delivered, report.dead_lettered) == (3, 0, 3)
    assert report.by_error_class == {"produce.unknown_topic": 3}
    shown = run_dlq(prefix, "inspect", "--dlq", prefix + topic, "--format", "ndjson")
    assert len(shown) == 3
    for r in shown:
        e = r["record"]
        assert e["error"].startswith(f"Failed to send to primary topic {topic}")
        assert e["dlq"]["error_class"] == "produce.unknown_topic"
        assert e["dlq"]["source"]["topic"] == topic
        assert e["dlq"]["headers"] == [["trace-id", "abc"]]
    assert sorted(r["record"]["original_record"]["n"] for r in shown) == [0, 1, 2]


def test_a_record_too_large_for_its_topic_goes_to_the_dlq_and_the_others_are_delivered(
    config: Dict[str, Any], prefix: str, create_topic: Any, run_dlq: Any
) -> None:
    topic = create_topic(**{"max.message.bytes": "20000"})
    big = b"x" * 50_000
    with dlq.GuardedProducer(config, dlq_prefix=prefix, delivery_timeout=10.0) as p:
        p.produce(topic, {"small": 1})
        p.produce(topic, big)
        p.produce(topic, {"small": 2})
        report = p.flush()

    assert (report.delivered, report.dead_lettered) == (2, 1)
    assert report.by_error_class == {"produce.record_too_large": 1}
    exported = run_dlq(prefix, "export", "--dlq", prefix + topic, raw=True).splitlines()
    letters = [dlq.envelope.decode(line) for line in exported]
    assert [l.payload for l in letters] == [big], "the payload intact, byte for byte"
    assert letters[0].error_class == "produce.record_too_large"


def test_with_the_cluster_unreachable_every_record_is_spooled_and_flush_spool_moves_it_once(
    tmp_path: Any, config: Dict[str, Any], prefix: str, run_dlq: Any
) -> None:
    spool = tmp_path / "spool.db"
    down = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    topic = "rss.events"
    with dlq.GuardedProducer(
        down, spool=spool, dlq_prefix=prefix, delivery_timeout=1.0, max_attempts=2, timeout=1.0
    ) as p:
        for i in range(10):
            p.produce(topic, {"event_id": f"evt-{i}"})
        report = p.flush()
    assert (report.sent, report.delivered, report.dead_lettered, report.spooled, report.failed) == (
        10,
        0,
        0,
        10,
        0,
    )
    assert report.by_error_class == {"produce.timeout": 10}
    assert dlq.spool_pending(spool) == 10

    moved = dlq.flush_spool(spool, config, dlq_prefix=prefix)
    again = dlq.flush_spool(spool, config, dlq_prefix=prefix)

    assert (moved.flushed, moved.appended, moved.pending) == (10, 10, 0)
    assert again.flushed == 0, "nothing moves twice"
    assert pending(run_dlq(prefix, "stats", "--format", "json"), prefix + topic) == 10


def test_without_a_spool_records_kafka_did_not_take_are_failed_and_close_raises(prefix: str) -> None:
    down = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    p = dlq.GuardedProducer(down, dlq_prefix=prefix, delivery_timeout=1.0, max_attempts=1, timeout=1.0)
    for i in range(4):
        p.produce("rss.events", {"n": i})
    report = p.flush()
    assert (report.sent, report.spooled, report.failed) == (4, 0, 4)

    with pytest.raises(dlq.DeliveryError, match="4 records") as raised:
        p.close()
    assert raised.value.report.failed == 4
    assert p.closed
    with pytest.raises(dlq.DlqError, match="closed"):
        p.produce("rss.events", b"x")


def test_close_leaves_no_thread_running(config: Dict[str, Any], prefix: str, create_topic: Any) -> None:
    topic = create_topic()
    before_native, before_python = tasks(), threading.active_count()
    p = dlq.GuardedProducer(config, dlq_prefix=prefix, delivery_timeout=4.0)
    p.produce(topic, {"n": 1})
    p.produce(f"py-missing-{prefix[5:-1]}", {"n": 2})  # a second client, and a DLQ store
    p.flush()
    assert tasks() > before_native, "librdkafka runs threads while the producer is open"

    p.close()

    assert tasks() == before_native
    assert threading.active_count() == before_python


def test_the_gil_is_released_while_flush_waits_on_kafka(config: Dict[str, Any], prefix: str) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    with dlq.GuardedProducer(config, dlq_prefix=prefix, delivery_timeout=4.0) as p:
        # An unknown topic: flush waits about two seconds for the verdict.
        p.produce(f"py-missing-{prefix[5:-1]}", {"n": 1})
        t = threading.Thread(target=count)
        t.start()
        started = time.monotonic()
        p.flush()
        waited = time.monotonic() - started
        stop.set()
        t.join()
    assert waited > 0.5
    # Held GIL: the counter thread cannot run at all while flush waits;
    # released: up to a tick per millisecond (50 a second leaves room for a
    # busy machine).
    assert ticks > waited * 50, (ticks, waited)


def test_flush_with_a_timeout_returns_in_time_with_the_records_still_in_flight(
    config: Dict[str, Any], prefix: str
) -> None:
    with dlq.GuardedProducer(config, dlq_prefix=prefix, delivery_timeout=4.0) as p:
        p.produce(f"py-missing-{prefix[5:-1]}", {"n": 1})
        started = time.monotonic()
        early = p.flush(0.2)
        assert time.monotonic() - started < 1.5
        assert early.in_flight == 1
        final = p.flush()
    assert (final.in_flight, final.dead_lettered) == (0, 1)


def test_bad_settings_raise_config_error_with_the_rust_message(config: Dict[str, Any]) -> None:
    with pytest.raises(dlq.ConfigError, match="is not a DLQ of the store"):
        dlq.GuardedProducer(config, dlq="errors.rss")
    with pytest.raises(dlq.ConfigError, match="max_in_flight must be at least 1"):
        dlq.GuardedProducer(config, max_in_flight=0)
    with pytest.raises(dlq.ConfigError, match="delivery_timeout"):
        dlq.GuardedProducer(config, delivery_timeout=-1.0)


def test_a_none_value_is_refused_not_dropped(config: Dict[str, Any]) -> None:
    with dlq.GuardedProducer(config) as p:
        with pytest.raises(ValueError, match="tombstone"):
            p.produce("rss.events", None)
        with pytest.raises(TypeError, match="headers"):
            p.produce("rss.events", b"x", headers=5)
        assert p.report.sent == 0
