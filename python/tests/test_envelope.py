"""dlq.envelope: the Rust codec's bytes, from Python."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any, Dict

import dlq
from dlq.envelope import DeadLetter, decode, encode


def test_encode_gives_the_bytes_dlq_export_writes(config: Dict[str, Any], prefix: str, run_dlq: Any) -> None:
    dlq_topic = prefix + "rss.events"
    records = [{"title": "Fed \u00e9 holds", "n": 1}, b"\x00\xffbin", "text \u2603"]
    dlq.send_to_dlq(dlq_topic, records, error="boom", config=config, dlq_prefix=prefix)
    exported = run_dlq(prefix, "export", "--dlq", dlq_topic, raw=True).splitlines()
    assert len(exported) == 3

    for line in exported:
        assert encode(decode(line)) == line


def test_a_letter_built_in_python_round_trips_byte_exact() -> None:
    letters = [
        DeadLetter(
            b'{ "price" : "N/A" }',  # JSON, kept verbatim with its spaces
            "invalid price",
            error_class="validation.wrong_type",
            stage="validate",
            key=b"\x00\xfe",
            headers=[("trace-id", b"\xff\x01"), ("empty", None), ("trace-id", "again")],
            source_topic="polymarket.price_hourly",
            source_partition=3,
            source_offset=1812,
            failed_at=datetime(2026, 11, 29, 7, 0, 0, 123000, tzinfo=timezone.utc),
        ),
        DeadLetter(os.urandom(64), "binary"),
        DeadLetter("caf\u00e9 \u2603", "text"),
        DeadLetter({"a": [1, 2, {"b": None}]}, "dict"),
    ]
    for letter in letters:
        back = decode(encode(letter))
        assert back.payload == letter.payload
        assert back.key == letter.key
        assert back.headers == letter.headers
        assert back.source == letter.source
        assert (back.id, back.error, back.error_class, back.stage) == (
            letter.id,
            letter.error,
            letter.error_class,
            letter.stage,
        )
        assert encode(back) == encode(letter)
    first = decode(encode(letters[0]))
    assert first.failed_at == datetime(2026, 11, 29, 7, 0, 0, 123000, tzinfo=timezone.utc)
    assert json.loads(encode(letters[0]))["timestamp"] == "2026-11-29T07:00:00.123Z"


def test_decode_reads_the_seed_format() -> None:
    seed = json.dumps(
        {
            "original_record": {"event_id": "evt-1", "price": "N/A"},
            "error": "Failed to send to primary topic",
            "timestamp": "2026-11-29T07:00:00.123456",
        }
    ).encode()

    letter = decode(seed, "seed-1")

    assert letter.origin == "seed"
    assert letter.original_record == {"event_id": "evt-1", "price": "N/A"}
    assert letter.error == "Failed to send to primary topic"
    assert letter.failed_at == datetime(2026, 11, 29, 7, 0, 0, 123456, tzinfo=timezone.utc)


def test_decode_never_fails_and_keeps_any_bytes_as_a_raw_record() -> None:
    for data in [b"", b"\xff\xfe\x00", b"{not json", b'{"dlq":{"v":99}}', os.urandom(300)]:
        letter = decode(data, "raw-1")
        assert letter.payload == data
        assert letter.origin == "raw"
        assert letter.id == "raw-1"
