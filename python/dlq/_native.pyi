"""Type hints of the native module (Rust, PyO3). Import from ``dlq``."""

import os
from datetime import datetime
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

__version__: str

ConfigValue = Union[str, int, float, bool]
Record = Any  # dict/list/number (JSON), bytes-like (as is) or str (UTF-8)
HeaderValue = Union[bytes, bytearray, memoryview, str, None]
Headers = Union[Mapping[str, HeaderValue], List[Tuple[str, HeaderValue]], None]
Key = Union[bytes, bytearray, memoryview, str, None]
PathArg = Union[str, "os.PathLike[str]"]

class DlqError(Exception):
    """Base class of every error dlq raises."""

class ConfigError(DlqError):
    """The configuration cannot work; the message lists every problem."""

class DeliveryError(DlqError):
    """Records were neither delivered, dead-lettered nor spooled."""

    report: Union["ProduceReport", "SendReport"]

class SpoolError(DlqError):
    """The local spool could not be opened or read."""

class KafkaSettings:
    """The Kafka settings dlq builds from a config dict; never the password."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def properties(self) -> Dict[str, str]:
        """librdkafka properties passed through, secret values as ``***``."""
    @property
    def has_sasl_password(self) -> bool: ...
    @property
    def dlq_prefix(self) -> str: ...
    @property
    def timeout(self) -> float: ...

def kafka_settings(
    config: Optional[Mapping[str, ConfigValue]] = None,
    *,
    dlq_prefix: Optional[str] = None,
    timeout: Optional[float] = None,
    replication_factor: Optional[int] = None,
) -> KafkaSettings:
    """The settings dlq would use for ``config`` (without it: the
    ``DLQ_KAFKA_*`` environment). Raises ConfigError listing every problem."""

class ProduceReport:
    """What a GuardedProducer did so far. After a flush that did not time
    out, ``sent == delivered + dead_lettered + spooled + failed``."""

    sent: int
    delivered: int
    retried: int
    dead_lettered: int
    spooled: int
    failed: int
    in_flight: int
    spool_flushed: int
    by_error_class: Dict[str, int]
    def to_dict(self) -> Dict[str, Any]: ...

class GuardedProducer:
    """Produce to Kafka topics so that no record is lost.

    Each record given to :meth:`produce` ends up in its topic (``acks=all``,
    idempotent), or — after ``max_attempts`` for a retryable failure, at
    once for a permanent one (unknown topic, record too large,
    authorization) — in its DLQ (``dlq=``, else ``<dlq_prefix><topic>``)
    with its error, or, when the DLQ cannot be written either, in the
    ``spool`` file. Without a spool file, such records wait in memory and
    count as ``failed``; :meth:`close` raises DeliveryError for them.

    Args:
        config: A confluent_kafka-style dict of librdkafka properties
            (``sasl.password`` is kept secret); without it the
            ``DLQ_KAFKA_*`` environment.
        dlq: The DLQ of every topic; default ``<dlq_prefix><topic>``.
        spool: A SQLite file for dead letters the DLQ could not take
            (``dlq spool flush`` or :func:`flush_spool` moves them later;
            the producer does it by itself once Kafka answers).
        max_attempts: Delivery attempts in all, the first included.
        retry_backoff: Seconds before the first retry (doubling).
        delivery_timeout: Seconds one delivery attempt may take.
        max_in_flight: Records held at most; ``produce`` waits for room.
        timeout: Seconds one DLQ store operation may take (default 30).
        dlq_prefix: Topics starting with this are DLQs (default ``dlq.``).
        replication_factor: Of the DLQ topics dlq creates.

    Use it as a context manager, or call :meth:`close`: it flushes and
    stops every Kafka client, leaving no thread running.
    """

    def __init__(
        self,
        config: Optional[Mapping[str, ConfigValue]] = None,
        dlq: Optional[str] = None,
        spool: Optional[PathArg] = None,
        *,
        max_attempts: int = 3,
        retry_backoff: float = 0.1,
        delivery_timeout: float = 30.0,
        max_in_flight: int = 100_000,
        timeout: Optional[float] = None,
        dlq_prefix: Optional[str] = None,
        replication_factor: Optional[int] = None,
    ) -> None: ...
    def produce(self, topic: str, value: Record, key: Key = None, headers: Headers = None) -> None:
        """Accept a record and send it; returns once it is queued."""
    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports, retries and DLQ writes for ``timeout`` s."""
    def flush(self, timeout: Optional[float] = None) -> ProduceReport:
        """Wait until every record is delivered, dead-lettered, spooled or
        failed — or ``timeout`` seconds passed (``in_flight`` counts the
        rest) — and return the report. The GIL is released meanwhile."""
    @property
    def report(self) -> ProduceReport: ...
    def close(self) -> ProduceReport:
        """Flush, then stop every Kafka client. Raises DeliveryError when
        records were neither delivered, dead-lettered nor spooled."""
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "GuardedProducer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]] = None,
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> bool: ...

class SendReport:
    """What send_to_dlq did with the records."""

    dlq: str
    records: int
    dead_lettered: int
    duplicates: int
    spooled: int
    failed: int
    spool_flushed: int
    spool_pending: int
    ids: List[str]
    errors: List[str]
    def to_dict(self) -> Dict[str, Any]: ...

def send_dead_letters(
    dlq_topic: str,
    records: Iterable[Record],
    *,
    error: str,
    error_class: str,
    stage: str,
    retryable: bool,
    attempts: int,
    source_topic: Optional[str],
    config: Optional[Mapping[str, ConfigValue]],
    spool: Optional[PathArg],
    timeout: Optional[float],
    dlq_prefix: Optional[str],
    replication_factor: Optional[int],
) -> SendReport:
    """The mechanics of dlq.send_to_dlq; call that instead."""

class SpoolFlushReport:
    """What flush_spool did."""

    flushed: int
    appended: int
    duplicates: int
    pending: int

def flush_spool(
    spool: PathArg,
    config: Optional[Mapping[str, ConfigValue]] = None,
    *,
    timeout: Optional[float] = None,
    dlq_prefix: Optional[str] = None,
    replication_factor: Optional[int] = None,
) -> SpoolFlushReport:
    """Move every record of the spool file to its DLQ topic, once (what
    ``dlq spool flush`` does). Raises SpoolError when Kafka is unreachable."""

def spool_pending(spool: PathArg) -> int:
    """Records waiting in the spool file."""

class DeadLetter:
    """One dead letter: the original record's bytes, where it came from,
    and why it failed."""

    def __init__(
        self,
        payload: Record,
        error: str,
        *,
        id: Optional[str] = None,
        error_class: str = "unknown",
        stage: str = "unknown",
        retryable: bool = False,
        attempts: int = 1,
        key: Key = None,
        headers: Headers = None,
        source_system: Optional[str] = None,
        source_topic: Optional[str] = None,
        source_partition: Optional[int] = None,
        source_offset: Optional[int] = None,
        source_timestamp: Optional[datetime] = None,
        failed_at: Optional[datetime] = None,
        first_failed_at: Optional[datetime] = None,
        replays: int = 0,
        replay_of: Optional[str] = None,
    ) -> None: ...
    @property
    def id(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def original_record(self) -> Any:
        """The parsed JSON value, else the text, else the bytes."""
    @property
    def key(self) -> Optional[bytes]: ...
    @property
    def headers(self) -> List[Tuple[str, Optional[bytes]]]: ...
    @property
    def source(self) -> Dict[str, Any]: ...
    @property
    def stage(self) -> str: ...
    @property
    def error_class(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def attempts(self) -> int: ...
    @property
    def failed_at(self) -> datetime: ...
    @property
    def first_failed_at(self) -> datetime: ...
    @property
    def replays(self) -> int: ...
    @property
    def replay_of(self) -> Optional[str]: ...
    @property
    def error_truncated_from(self) -> Optional[int]: ...
    @property
    def origin(self) -> str: ...
    @property
    def claim_checks(self) -> List[Dict[str, Any]]: ...

def encode(letter: DeadLetter) -> bytes:
    """The v1 envelope, one line of JSON, every part inline."""

def decode(data: Union[bytes, bytearray, memoryview, str], fallback_id: str = "") -> DeadLetter:
    """Any DLQ record's bytes as a dead letter; never fails."""
