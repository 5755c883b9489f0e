"""confluent_kafka-style config dicts: what passes through, what never shows.

Unit level: no broker is needed (the clients connect lazily)."""

from __future__ import annotations

import os

import pytest

import dlq

SEED = {
    "bootstrap.servers": "b-1.marketlag.kafka.us-east-1.amazonaws.com:9096",
    "security.protocol": "SASL_SSL",
    "sasl.mechanisms": "PLAIN",
    "sasl.username": "marketlag",
    "sasl.password": "hunter2-canary",
}


def test_the_seeds_sasl_ssl_settings_pass_through_and_the_password_never_shows() -> None:
    s = dlq.kafka_settings(SEED)

    assert s.bootstrap_servers == SEED["bootstrap.servers"]
    assert s.properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "marketlag",
    }
    assert s.has_sasl_password
    assert "hunter2-canary" not in repr(s)
    assert "sasl_password: Some(***)" in repr(s)


def test_the_password_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    without = {k: v for k, v in SEED.items() if k != "sasl.password"}
    with pytest.raises(dlq.ConfigError, match="needs a password"):
        dlq.kafka_settings(without)
    monkeypatch.setenv("DLQ_KAFKA_SASL_PASSWORD", "hunter2-canary")
    assert dlq.kafka_settings(without).has_sasl_password


def test_a_dict_naming_its_cluster_is_not_redirected_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DLQ_KAFKA_BOOTSTRAP", "elsewhere:9092")
    assert dlq.kafka_settings({"bootstrap.servers": "here:9092"}).bootstrap_servers == "here:9092"
    assert dlq.kafka_settings().bootstrap_servers == "elsewhere:9092", "no dict: the environment"


def test_other_secret_properties_are_masked() -> None:
    s = dlq.kafka_settings(
        {**SEED, "ssl.key.password": "keypass-canary", "sasl.oauthbearer.client.secret": "oauth-canary"}
    )
    assert s.properties["ssl.key.password"] == "***"
    assert s.properties["sasl.oauthbearer.client.secret"] == "***"
    assert "keypass-canary" not in repr(s) and "oauth-canary" not in repr(s)


def test_sasl_ssl_settings_reach_librdkafka_and_its_errors_carry_no_secret() -> None:
    # librdkafka checks ssl.ca.location when it creates the client: its
    # refusal proves the SSL settings reached it.
    config = {**SEED, "bootstrap.servers": "127.0.0.1:1", "ssl.ca.location": "/nonexistent/ca.pem"}
    p = dlq.GuardedProducer(config, delivery_timeout=1.0, timeout=1.0)
    with pytest.raises(dlq.ConfigError) as raised:
        p.produce("rss.events", {"n": 1})
    assert "ssl.ca.location" in str(raised.value)
    assert "hunter2-canary" not in str(raised.value)
    assert "hunter2-canary" not in repr(p)
    p.close()


def test_a_sasl_config_missing_its_username_and_password_lists_both_problems() -> None:
    with pytest.raises(dlq.ConfigError) as raised:
        dlq.kafka_settings({"bootstrap.servers": "h:1", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"})
    assert "needs a password" in str(raised.value)
    assert "needs sasl.username" in str(raised.value)


def test_managed_properties_are_accepted_when_they_agree_and_refused_otherwise() -> None:
    ok = dlq.kafka_settings({"bootstrap.servers": "h:1", "acks": "all", "enable.idempotence": True, "linger.ms": 20})
    assert ok.properties == {"linger.ms": "20"}
    with pytest.raises(dlq.ConfigError, match="option acks is managed by the store"):
        dlq.kafka_settings({"bootstrap.servers": "h:1", "acks": 1})


def test_values_dlq_cannot_pass_to_librdkafka_are_type_errors() -> None:
    with pytest.raises(TypeError, match="callbacks are not supported"):
        dlq.kafka_settings({"bootstrap.servers": "h:1", "error_cb": print})
    with pytest.raises(TypeError, match="must be a str, int, float or bool"):
        dlq.kafka_settings({"bootstrap.servers": "h:1", "linger.ms": [5]})
    with pytest.raises(dlq.ConfigError, match="bootstrap.servers"):
        dlq.kafka_settings({"security.protocol": "SSL"})


def test_a_panic_in_the_native_code_is_a_dlq_error_not_a_crash() -> None:
    from dlq import _native

    hook = getattr(_native, "_panic_for_tests", None)
    if hook is None:
        if os.environ.get("CI"):
            pytest.fail("build the package with --features test-hooks (scripts/test.sh does)")
        pytest.skip("the package was built without --features test-hooks")
    with pytest.raises(dlq.DlqError, match="internal error in dlq .*a deliberate panic"):
        hook()
    # The module still works afterwards.
    assert dlq.kafka_settings({"bootstrap.servers": "h:1"}).bootstrap_servers == "h:1"
