"""dlq: dead letter queues for Kafka pipelines, from the dlq Rust core.

* :func:`send_to_dlq` — a drop-in for the seed Lambda's function of the
  same name: writes failed records to a DLQ topic as dlq envelopes (a
  superset of ``{original_record, error, timestamp}``) and returns only when
  every record is written, spooled, or reported failed.
* :class:`GuardedProducer` — produce with retries; a record that still
  fails goes to its DLQ with the error, and when the DLQ cannot be written
  either, to a durable local spool.
* :mod:`dlq.envelope` — encode and decode the envelope, byte for byte as
  the Rust side does.

Delivery semantics: at-least-once, never dropped silently. A record is in
its topic, in its DLQ, in the spool file, or counted as ``failed`` (and
raised as :class:`DeliveryError`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, Optional, Union

from . import envelope
from ._native import (
    ConfigError,
    DeliveryError,
    DlqError,
    GuardedProducer,
    KafkaSettings,
    ProduceReport,
    SendReport,
    SpoolError,
    SpoolFlushReport,
    __version__,
    flush_spool,
    kafka_settings,
    spool_pending,
)
from ._native import send_dead_letters as _send_dead_letters

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DlqError",
    "GuardedProducer",
    "KafkaSettings",
    "ProduceReport",
    "SendReport",
    "SpoolError",
    "SpoolFlushReport",
    "__version__",
    "envelope",
    "flush_spool",
    "kafka_settings",
    "send_to_dlq",
    "spool_pending",
]

ConfigValue = Union[str, int, float, bool]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def send_to_dlq(
    dlq_topic: str,
    failed_records: Iterable[Any],
    error: Union[BaseException, str, None] = None,
    config: Optional[Mapping[str, ConfigValue]] = None,
    *,
    error_class: Optional[str] = None,
    stage: str = "produce",
    retryable: bool = False,
    attempts: int = 1,
    source_topic: Optional[str] = None,
    spool: Union[str, "os.PathLike[str]", None] = None,
    timeout: Optional[float] = None,
    dlq_prefix: Optional[str] = None,
    replication_factor: Optional[int] = None,
) -> SendReport:
    """Write failed records to a DLQ topic; return when each is safe or reported.

    A drop-in for the seed Lambda's ``send_to_dlq(dlq_topic,
    failed_records, error)``: each record becomes a dlq envelope whose
    ``original_record``, ``error`` and ``timestamp`` are the seed's fields,
    with dlq's metadata beside them. Unlike the seed, every write is
    acknowledged before this returns.

    Args:
        dlq_topic: The DLQ topic, e.g. ``"dlq.rss.events"``. It must start
            with the DLQ prefix (``dlq.`` unless ``dlq_prefix`` says
            otherwise); it is created when missing.
        failed_records: The records: dicts (or any JSON value) are written
            as JSON, ``bytes`` as they are, ``str`` as its text.
        error: The error that made them fail; ``str(error)`` is the
            envelope's ``error``, as in the seed.
        config: A ``confluent_kafka``-style dict of librdkafka properties
            (``bootstrap.servers``, ``security.protocol``,
            ``sasl.mechanisms``, ``sasl.username``, ``sasl.password``, …),
            passed through; the password is never logged or put in an error.
            Without it, the ``DLQ_KAFKA_*`` environment is used.
        error_class: A stable dotted class for grouping (``dlq analyze``).
            Default: ``<stage>.<exception type in snake case>`` for an
            exception (``produce.kafka_exception``), else ``<stage>.error``.
        stage: The stage that failed. Default ``produce``.
        retryable: Whether a replay as is may succeed.
        attempts: Attempts made before giving up.
        source_topic: The topic the records were meant for; a replay sends
            them back there. Default: the DLQ topic without its prefix.
        spool: A file (SQLite) where the records wait when the DLQ cannot be
            written; later calls, ``dlq.flush_spool`` or ``dlq spool flush``
            move them to Kafka. On AWS Lambda, ``/tmp`` is lost on a cold
            start: see the README.
        timeout: Seconds one broker operation may take (default 30).
        dlq_prefix: The DLQ prefix, when it is not ``dlq.``.
        replication_factor: Replication factor of topics dlq creates.

    Returns:
        A :class:`SendReport`: ``dead_lettered``, ``spooled``, ``failed``
        (always 0 on return), the ids given to the records, and errors met.

    Raises:
        DeliveryError: some records could be written neither to the DLQ nor
            to the spool (its ``report`` says how many); let it fail the
            invocation so that the input is retried.
        ConfigError: the configuration cannot work (every problem listed).
        TypeError: a record, key or config value of a type dlq cannot write.
    """
    if isinstance(error, BaseException):
        message = str(error) or type(error).__name__
        default_class = f"{stage}.{_snake(type(error).__name__)}"
    else:
        message = "" if error is None else str(error)
        default_class = f"{stage}.error"
    if isinstance(failed_records, (bytes, bytearray, str, dict)):
        # One record given where a list was expected: never iterate a
        # record's bytes or keys as if they were records.
        failed_records = [failed_records]
    return _send_dead_letters(
        dlq_topic,
        failed_records,
        error=message,
        error_class=error_class or default_class,
        stage=stage,
        retryable=retryable,
        attempts=attempts,
        source_topic=source_topic,
        config=dict(config) if config is not None else None,
        spool=os.fspath(spool) if spool is not None else None,
        timeout=timeout,
        dlq_prefix=dlq_prefix,
        replication_factor=replication_factor,
    )
