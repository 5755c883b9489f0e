#!/usr/bin/env bash
# Runs every test of the project: unit, property and integration tests.
#
# It installs what the tests need from the project's own files: Rust crates
# from crates.io through Cargo.lock, the system libraries the Kafka client
# builds against (Debian packages, when missing), the Apache Kafka broker
# (Maven Central jars, through scripts/kafka.sh), the SQS-compatible
# ElasticMQ server and S3Proxy (Maven Central jars, through scripts/sqs.sh
# and scripts/s3.sh), the dashboard's chart
# library (npm), and Chromium (Debian) with playwright-core (npm) for the
# dashboard's browser test. The servers are started before
# the tests and stopped after them, also when they fail. Benchmarks are not
# tests: see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# rdkafka is built with TLS (for SASL_SSL clusters): it needs OpenSSL's
# headers and pkg-config.
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "== installing libssl-dev and pkg-config"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq libssl-dev pkg-config
fi

# The dashboard's browser test drives Debian's Chromium with playwright-core
# (from npm, pinned by its package-lock.json; it never downloads a browser).
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium and chromium-driver"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq chromium chromium-driver
fi
echo "== npm ci (dashboard chart library; dashboard browser test)"
(cd crates/dlq-server/web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
(cd crates/dlq-server/tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== starting the Kafka broker"
# A fresh log directory for every run: tests create random topics.
scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
DLQ_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start)"
export DLQ_KAFKA_BOOTSTRAP
# The broker's SASL_PLAINTEXT listener (PLAIN, a test user): authentication tests.
DLQ_KAFKA_SASL_BOOTSTRAP="$(scripts/kafka.sh sasl-bootstrap)"
export DLQ_KAFKA_SASL_BOOTSTRAP
# One EXIT trap stops every server started here, also when a test fails.
stop_servers() {
  echo "== stopping the Kafka broker"
  scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  echo "== stopping the SQS server"
  scripts/sqs.sh stop >/dev/null 2>&1 || true
  echo "== stopping S3Proxy"
  scripts/s3.sh stop --wipe >/dev/null 2>&1 || true
}
trap stop_servers EXIT
echo "broker at $DLQ_KAFKA_BOOTSTRAP (SASL_PLAINTEXT at $DLQ_KAFKA_SASL_BOOTSTRAP)"

echo "== starting the SQS server (ElasticMQ)"
# In-memory queues: a restart starts empty; tests use random queue names.
scripts/sqs.sh stop >/dev/null 2>&1 || true
DLQ_SQS_ENDPOINT="$(scripts/sqs.sh start)"
export DLQ_SQS_ENDPOINT
echo "SQS server at $DLQ_SQS_ENDPOINT"

# The S3 store's tests (crates/dlq-s3, the CLI's s3 test): S3Proxy, empty.
echo "== starting S3Proxy"
scripts/s3.sh stop --wipe >/dev/null 2>&1 || true
DLQ_S3_ENDPOINT="$(scripts/s3.sh start)"
export DLQ_S3_ENDPOINT
echo "S3 at $DLQ_S3_ENDPOINT"
# The AWS SDK signs every request and dlq takes credentials only from the
# standard chain (environment, profile): the test servers' credentials for
# this run (S3Proxy checks them, ElasticMQ takes any), never real ones.
export AWS_ACCESS_KEY_ID=dlqtest AWS_SECRET_ACCESS_KEY=dlqtest-secret
unset AWS_SESSION_TOKEN AWS_PROFILE

echo "== cargo test"
cargo test --workspace --locked "$@"

# This test stops and restarts the broker (the guarded producer's spool),
# so it runs alone, after everything else.
echo "== cargo test: guarded producer across a broker restart"
# --workspace keeps the features of the run above, so nothing is rebuilt.
DLQ_KAFKA_RESTARTABLE=1 cargo test --workspace --locked --test kafka_produce "$@"

# ---- Python package (python/, issue #14) -----------------------------------
# Builds the `dlq` Python package from source as a user would (`pip install
# ./python`, maturin's PEP 517 backend) and runs its pytest suite against the
# broker, which is still running, and target/debug/dlq, built by the cargo
# tests above. The extension is built with the dev profile: it reuses
# target/debug (seconds), where a release build would compile rdkafka,
# OpenSSL bindings and SQLite again (minutes). `test-hooks` adds the hook
# that proves a native panic reaches Python as dlq.DlqError. CI=true: a
# missing broker, binary or hook fails the tests instead of skipping them.
echo "== python: pip install ./python, pytest"
# Debian splits venv (and its pip) out of python3.
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq python3-venv
fi
py_venv=target/python-venv
rm -rf "$py_venv"
python3 -m venv "$py_venv"
MATURIN_PEP517_ARGS="--profile dev --locked --features test-hooks" \
  "$py_venv/bin/pip" install -q --disable-pip-version-check ./python pytest==9.2.0 confluent-kafka==2.16.1
# The installed package is tested, not python/dlq (`python -m pytest` would
# put the working directory first on sys.path). Under `set -e` any exit code
# but 0 fails the run, pytest's 5 (no test collected) included.
CI=true "$py_venv/bin/pytest" python/tests -q -p no:cacheprovider
# ---- end of Python package ---------------------------------------------------
