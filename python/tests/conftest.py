"""Fixtures for the dlq package's tests: the real broker, the `dlq` binary.

Tests that need the broker read its address from DLQ_KAFKA_BOOTSTRAP
(scripts/test.sh starts it and sets it). Without it they are skipped with
a message — unless CI is set, where a missing broker is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set: the test command must provide it)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The real broker's address."""
    address = os.environ.get("DLQ_KAFKA_BOOTSTRAP")
    if not address:
        _missing(
            "DLQ_KAFKA_BOOTSTRAP is not set: start a broker (scripts/kafka.sh start) "
            "and export DLQ_KAFKA_BOOTSTRAP=127.0.0.1:19092"
        )
    assert address
    return address


@pytest.fixture(scope="session")
def dlq_bin() -> Path:
    """The workspace's `dlq` binary (target/debug/dlq, or DLQ_BIN)."""
    path = Path(os.environ.get("DLQ_BIN", ROOT / "target" / "debug" / "dlq"))
    if not path.is_file():
        _missing(f"{path} does not exist: build it with `cargo build -p dlq-cli`")
    return path


@pytest.fixture
def prefix() -> str:
    """A DLQ prefix of this test alone (dlq.t<random>.): its DLQs are
    dlq.rss.events-style names that no other test's `dlq stats` reads."""
    return f"dlq.t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def config(bootstrap: str) -> Dict[str, Any]:
    """A confluent_kafka-style config for the real broker."""
    return {"bootstrap.servers": bootstrap}


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> Any:
    confluent_kafka = pytest.importorskip("confluent_kafka.admin")
    return confluent_kafka.AdminClient({"bootstrap.servers": bootstrap})


@pytest.fixture
def create_topic(admin: Any) -> Callable[..., str]:
    """Creates a topic with a random name and returns the name."""
    from confluent_kafka.admin import NewTopic

    def create(name: str = "", partitions: int = 1, **config: str) -> str:
        name = name or f"py-{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
        )
        futures[name].result(timeout=30)
        return name

    return create


@pytest.fixture
def run_dlq(dlq_bin: Path, bootstrap: str) -> Callable[..., Any]:
    """Runs `dlq --store kafka://…?dlq_prefix=PREFIX ARGS`; returns its JSON
    output (a list for ndjson) and checks the exit code."""

    def run(prefix: str, *args: str, expect: int = 0, raw: bool = False) -> Any:
        store = f"kafka://{bootstrap}?dlq_prefix={prefix}&replication_factor=1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLQ_KAFKA_")}
        p = subprocess.run(
            [str(dlq_bin), "--store", store, "--no-progress", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert p.returncode == expect, f"dlq {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
        if raw:
            return p.stdout.encode()
        out = p.stdout.strip()
        if "ndjson" in args:
            return [json.loads(line) for line in out.splitlines() if line]
        return json.loads(out) if out else None

    return run


def pending(stats: Dict[str, Any], dlq: str) -> int:
    """Pending records of one DLQ in `dlq stats --format json`."""
    found: List[int] = [d["pending"] for d in stats["dlqs"] if d["dlq"] == dlq]
    assert found, f"{dlq} not in {stats}"
    return found[0]


def closed_port() -> int:
    """A local port nobody listens on (the cluster is unreachable)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
