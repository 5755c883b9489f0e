#!/usr/bin/env bash
# The Kafka benchmarks of BENCHMARKS.md: dlq's processor and replayer side by
# side with their baselines (a plain rdkafka loop, kcat), on one local broker,
# in one run. Prints the ratio tables (Markdown) on stdout, progress on
# stderr. About 4 minutes on 2 cores, plus the first release build.
#
#   scripts/bench-kafka.sh [kafka_bench options]
#       --records N          processor source records (default 300000)
#       --replay-records N   dead letters replayed, dlq vs kcat (default 100000)
#       --eos-records N      dead letters replayed, exactly-once vs at-least-once
#                            (default 50000)
#       --replay-batch N     records per replay page, i.e. per store commit
#                            (default 500, what dlq replay uses)
#       --rounds R           runs of each side, alternated (default 5)
#       --only LIST          processor,replay,eos (default all)
#
# It installs kcat (Debian package) when missing, builds the bench in release,
# starts the broker with scripts/kafka.sh unless one is already running (and
# then stops it again at the end; a broker that was already running is left
# running). The scripts/kafka.sh environment applies (DLQ_KAFKA_PORT,
# DLQ_KAFKA_DIR, ...), e.g. to run on a broker of its own:
#
#   DLQ_KAFKA_DIR=/tmp/bench-kafka DLQ_KAFKA_PORT=39092 \
#     DLQ_KAFKA_CONTROLLER_PORT=39093 scripts/bench-kafka.sh
#
# Benchmarks are not tests: nothing here fails because a machine is slow; it
# fails when a side did not move every record (the bench verifies each run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
}

# The baseline of the replay comparison.
if ! command -v kcat >/dev/null 2>&1; then
  echo "== installing kcat" >&2
  apt_install kcat
fi
# rdkafka is built with TLS: OpenSSL's headers and pkg-config.
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "== installing libssl-dev and pkg-config" >&2
  apt_install libssl-dev pkg-config
fi

echo "== building the bench (release)" >&2
cargo build --release --locked -p dlq-bench --bin kafka_bench >&2
target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bench="${target_dir:-target}/release/kafka_bench"

started=0
if bootstrap="$(scripts/kafka.sh status 2>/dev/null)"; then
  echo "== using the running broker at $bootstrap" >&2
else
  echo "== starting the Kafka broker" >&2
  bootstrap="$(scripts/kafka.sh start)"
  started=1
fi
stop_broker() {
  if [ "$started" = 1 ]; then
    echo "== stopping the Kafka broker this script started" >&2
    scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
}
trap stop_broker EXIT

echo "== kafka_bench on $bootstrap ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
echo "kcat: $(kcat -V 2>&1 | sed -n 's/^Version //p')" >&2
DLQ_KAFKA_BOOTSTRAP="$bootstrap" "$bench" "$@"
