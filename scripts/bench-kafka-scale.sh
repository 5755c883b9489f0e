#!/usr/bin/env bash
# Kafka at scale (issue #11): what each dlq command costs on one DLQ topic of
# N seed-format dead letters, for the dlq of a revision before the issue and
# the current tree's, side by side in one run, with `kcat -C | kcat -P` as
# the baseline of the replay. Each command is a fresh process, timed with
# GNU time (wall time, peak RSS). Prints one Markdown table per N and the
# ratios of BENCHMARKS.md on stdout, progress on stderr.
#
#   scripts/bench-kafka-scale.sh [options]
#       --records "N ..."   sizes of the DLQ (default "10000 1000000")
#       --10m               also 10,000,000 records
#       --before REV        the revision to compare with (default c9b493e,
#                           the code before issue #11)
#       --partitions P      partitions of the DLQ and target topics (default 1)
#       --no-before         measure the current tree only
#
# Per N: kcat -P fills topic <run>-dlq.events with N records as the seed's
# MarketLag Lambda wrote them ({"original_record", "error", "timestamp"});
# then, before and after in turn (the order flipping each time), `dlq stats`
# twice (the first one counts the offsets nobody counted yet and writes the
# count to the ledger; the second is what every later call costs), `dlq inspect --limit 5`,
# `dlq analyze`, `dlq replay --to kafka:T` at least once and with
# `--exactly-once` (each replay with a ledger of its own, so that each finds
# every record pending, and a target topic of its own); then the kcat copy
# of the DLQ topic to a target topic. Every topic of the run is deleted
# after each N. A store URL with `dlq_prefix=<run>-dlq.` keeps the commands
# to this run's DLQ on a shared broker.
#
# The revision before is built in release from a `git worktree` in
# <target>/bench-before/src into <target>/bench-before/target (kept, and
# reused by the next run); the current tree's dlq in <target>/release.
# The broker: DLQ_KAFKA_BOOTSTRAP when set, else the one scripts/kafka.sh
# runs (started, and stopped at the end, when it is not running). Topics are
# created and deleted with Kafka's TopicCommand from the broker's jars
# (DLQ_KAFKA_LIBS, default .kafka/libs).
#
# Benchmarks are not tests: nothing fails because a machine is slow; a run
# fails when a command fails or a replay or copy did not move N records.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

records=(10000 1000000)
before_rev=c9b493e
partitions=1
with_before=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) read -r -a records <<<"$2"; shift 2 ;;
    --10m) records+=(10000000); shift ;;
    --before) before_rev="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --no-before) with_before=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
}
if ! command -v kcat >/dev/null 2>&1; then
  echo "== installing kcat" >&2
  apt_install kcat
fi
if [ ! -x /usr/bin/time ]; then
  echo "== installing GNU time" >&2
  apt_install time
fi
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "== installing libssl-dev and pkg-config" >&2
  apt_install libssl-dev pkg-config
fi

target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-$repo/target}"

echo "== building dlq (current tree, release)" >&2
cargo build --release --locked -p dlq-cli --bin dlq >&2
after_bin="$target_dir/release/dlq"
versions=(after)
if [ "$with_before" = 1 ]; then
  before_dir="$target_dir/bench-before"
  before_commit="$(git rev-parse --verify "$before_rev^{commit}")"
  if [ -e "$before_dir/src/.git" ]; then
    git -C "$before_dir/src" checkout -q --detach "$before_commit"
  else
    mkdir -p "$before_dir"
    git worktree add -q --detach "$before_dir/src" "$before_commit"
  fi
  echo "== building dlq at $before_rev (${before_commit:0:9}, release)" >&2
  (cd "$before_dir/src" &&
    CARGO_TARGET_DIR="$before_dir/target" cargo build --release --locked -p dlq-cli --bin dlq >&2)
  before_bin="$before_dir/target/release/dlq"
  versions=(before after)
fi
bin_of() { if [ "$1" = before ]; then echo "$before_bin"; else echo "$after_bin"; fi; }
# The versions in turn, the order flipping at each call (before after,
# after before, ...), so that neither always runs on a warmer broker.
pair=0
in_turn() {
  pair=$((1 - pair))
  if [ "${#versions[@]}" = 2 ] && [ "$pair" = 0 ]; then order=(after before); else order=("${versions[@]}"); fi
}

started=0
if [ -n "${DLQ_KAFKA_BOOTSTRAP:-}" ]; then
  bootstrap="$DLQ_KAFKA_BOOTSTRAP"
  echo "== using the broker at $bootstrap (DLQ_KAFKA_BOOTSTRAP)" >&2
elif bootstrap="$(scripts/kafka.sh status 2>/dev/null)"; then
  echo "== using the running broker at $bootstrap" >&2
else
  echo "== starting the Kafka broker" >&2
  bootstrap="$(scripts/kafka.sh start)"
  started=1
fi

libs="${DLQ_KAFKA_LIBS:-$repo/.kafka/libs}"
[ -d "$libs" ] || { echo "no Kafka jars in $libs (set DLQ_KAFKA_LIBS)" >&2; exit 2; }
topic_tool() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "$@" >/dev/null 2>&1
}

run="bench-scale-$$-$(date +%s)"
scratch="$(mktemp -d /tmp/bench-kafka-scale.XXXXXX)"
cleanup() {
  topic_tool --delete --if-exists --topic "$run.*" || true
  rm -rf "$scratch"
  if [ "$started" = 1 ]; then
    echo "== stopping the Kafka broker this script started" >&2
    scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

results="$scratch/results.tsv" # n, command, version, seconds, peak RSS KiB
: >"$results"

# One line per record, as the seed's Lambda wrote them: a few error
# templates with varying numbers, timestamps a second apart.
seed_records() {
  awk -v n="$1" 'BEGIN {
    split("Failed to send to primary topic: KafkaError{code=MSG_TIMED_OUT,val=-192,str=\"Local: Message timed out\"}|Failed to send to primary topic: KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str=\"Broker: Message size too large\"}|Validation failed: price out of range for market|Validation failed: missing field volume_24h", errs, "|");
    for (i = 0; i < n; i++) {
      s = 1764399600 + i;
      ts = strftime("%Y-%m-%dT%H:%M:%S", s, 1);
      printf "{\"original_record\": {\"market_id\": \"m-%d\", \"title\": \"market %d\", \"price\": %.4f, \"volume\": %d}, \"error\": \"%s%s\", \"timestamp\": \"%s.%06d+00:00\"}\n",
        i % 5000, i, (i % 997) / 1000.0, i * 7 % 100000, errs[i % 4 + 1], (i % 4 >= 2 ? " " (i % 50) : ""), ts, i % 1000000;
    }
  }'
}

high_watermarks() { # topic: sum of the partitions' end offsets
  kcat -Q -b "$bootstrap" $(for p in $(seq 0 $((partitions - 1))); do printf -- '-t %s:%s:-1 ' "$1" "$p"; done) 2>/dev/null |
    awk '{ s += $NF } END { print s + 0 }'
}

# measure N COMMAND VERSION OUT -- argv...: wall time and peak RSS of one process.
measure() {
  local n="$1" cmd="$2" version="$3" out="$4"
  shift 5
  local t="$scratch/time"
  if ! /usr/bin/time -f '%e %M' -o "$t" "$@" >"$out" 2>"$scratch/stderr"; then
    echo "!! $cmd ($version, $n) failed:" >&2
    tail -5 "$scratch/stderr" >&2
    exit 1
  fi
  read -r secs rss <"$t"
  printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$cmd" "$version" "$secs" "$rss" >>"$results"
  printf '   %-22s %-6s %8.2f s %8.1f MB\n' "$cmd" "$version" "$secs" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" >&2
}

for n in "${records[@]}"; do
  dlq_prefix="$run.$n-dlq."
  dlq_topic="${dlq_prefix}events"
  echo "== N=$n: filling $dlq_topic with kcat -P" >&2
  topic_tool --create --topic "$dlq_topic" --partitions "$partitions" --replication-factor 1
  fill_started="$(date +%s.%N)"
  seed_records "$n" | kcat -P -b "$bootstrap" -t "$dlq_topic"
  fill_secs="$(awk -v a="$fill_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
  filled="$(high_watermarks "$dlq_topic")"
  [ "$filled" = "$n" ] || { echo "!! the DLQ holds $filled records, not $n" >&2; exit 1; }
  printf '%s\tfill\tkcat\t%s\t\n' "$n" "$fill_secs" >>"$results"

  store_for() { # ledger name: the store URL of this N's DLQ
    echo "kafka://$bootstrap?dlq_prefix=$dlq_prefix&ledger=$run.$n-$1&blobs=$run.$n-blobs"
  }
  for cmd in stats stats-again inspect analyze; do
    in_turn
    for v in "${order[@]}"; do
      case "$cmd" in
        stats | stats-again) args=(stats) ;;
        inspect) args=(inspect --limit 5) ;;
        analyze) args=(analyze) ;;
      esac
      measure "$n" "$cmd" "$v" /dev/null -- \
        "$(bin_of "$v")" --store "$(store_for ledger)" --format json --no-progress "${args[@]}"
    done
  done
  for mode in at-least-once exactly-once; do
    in_turn
    for v in "${order[@]}"; do
      target="$run.$n-to-$v-$mode"
      topic_tool --create --topic "$target" --partitions "$partitions" --replication-factor 1
      flag=()
      [ "$mode" = exactly-once ] && flag=(--exactly-once)
      measure "$n" "replay $mode" "$v" "$scratch/replay.json" -- \
        "$(bin_of "$v")" --store "$(store_for "ledger-$v-$mode")" --format json --no-progress \
        replay --dlq "$dlq_topic" --to "kafka:$target" "${flag[@]}"
      replayed="$(sed -n 's/.*"replayed": *\([0-9]*\).*/\1/p' "$scratch/replay.json")"
      [ "$replayed" = "$n" ] || {
        echo "!! replay $mode ($v) replayed ${replayed:-?} of $n: $(cat "$scratch/replay.json")" >&2
        exit 1
      }
    done
  done

  # The baseline: a plain copy of the DLQ topic, two processes in a pipe
  # (their peak RSS added up).
  target="$run.$n-to-kcat"
  topic_tool --create --topic "$target" --partitions "$partitions" --replication-factor 1
  copy_started="$(date +%s.%N)"
  /usr/bin/time -f '%M' -o "$scratch/rss-c" kcat -C -b "$bootstrap" -t "$dlq_topic" -o beginning -e -q |
    /usr/bin/time -f '%M' -o "$scratch/rss-p" kcat -P -b "$bootstrap" -t "$target"
  copy_secs="$(awk -v a="$copy_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
  copied="$(high_watermarks "$target")"
  [ "$copied" = "$n" ] || { echo "!! kcat copied $copied records, not $n" >&2; exit 1; }
  copy_rss=$(($(tail -1 "$scratch/rss-c") + $(tail -1 "$scratch/rss-p")))
  printf '%s\tcopy\tkcat\t%s\t%s\n' "$n" "$copy_secs" "$copy_rss" >>"$results"
  printf '   %-22s %-6s %8.2f s %8.1f MB\n' "kcat copy" kcat "$copy_secs" "$(awk -v k="$copy_rss" 'BEGIN { print k / 1024 }')" >&2

  echo "== N=$n: deleting this N's topics" >&2
  topic_tool --delete --if-exists --topic "$run.$n-.*" || true
done

# The tables, from the results.
echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/\1 (librdkafka \2)/p'); DLQ topic partitions: $partitions.$([ "$with_before" = 1 ] && echo " Before: $before_rev; after: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo ' with uncommitted changes')." || true)"
awk -F'\t' -v with_before="$with_before" '
  function label(c) {
    if (c == "fill") return "fill: `kcat -P` (setup, not compared)"
    if (c == "copy") return "baseline: `kcat -C \\| kcat -P` copy (peak RSS of both)"
    if (c == "stats") return "`dlq stats` (first: counts what nobody counted)"
    if (c == "stats-again") return "`dlq stats` again"
    if (c == "inspect") return "`dlq inspect --limit 5`"
    if (c == "replay at-least-once") return "`dlq replay --to kafka:T`"
    if (c == "replay exactly-once") return "`dlq replay --to kafka:T --exactly-once`"
    return "`dlq " c "`"
  }
  function cell(n, c, v) {
    if (!((n, c, v) in secs)) return ""
    return sprintf("%.2f s", secs[n, c, v]) (rss[n, c, v] == "" ? "" : sprintf(", %.0f MB", rss[n, c, v] / 1024))
  }
  {
    secs[$1, $2, $3] = $4; rss[$1, $2, $3] = $5
    if (!($1 in seen_n)) { seen_n[$1] = 1; ns[++nn] = $1 }
    if (!(($1, $2) in seen_c)) { seen_c[$1, $2] = 1; cmds[$1, ++nc[$1]] = $2 }
  }
  END {
    nv = split(with_before ? "before after" : "after", vs, " ")
    for (i = 1; i <= nn; i++) {
      n = ns[i]
      printf "\n#### %d records\n\n", n
      if (with_before) {
        print "| command | before (time, peak RSS) | after (time, peak RSS) | after/before time |"
        print "|---|---|---|---|"
      } else {
        print "| command | time, peak RSS |"
        print "|---|---|"
      }
      for (j = 1; j <= nc[n]; j++) {
        c = cmds[n, j]
        if ((n, c, "kcat") in secs) {
          printf "| %s | %s |%s\n", label(c), cell(n, c, "kcat"), (with_before ? " | |" : "")
        } else if (with_before) {
          b = secs[n, c, "before"]; a = secs[n, c, "after"]
          printf "| %s | %s | %s | %.2f× |\n", label(c), cell(n, c, "before"), cell(n, c, "after"), (b > 0 ? a / b : 0)
        } else {
          printf "| %s | %s |\n", label(c), cell(n, c, "after")
        }
      }
      k = secs[n, "copy", "kcat"]
      printf "\nReplay throughput relative to the kcat copy (kcat time / replay time; goal at 1M: ≥ 1.0× at least once, ≥ 0.85× exactly once):"
      for (m = 1; m <= 2; m++) {
        mode = (m == 1 ? "at-least-once" : "exactly-once")
        for (v = 1; v <= nv; v++) {
          t = secs[n, "replay " mode, vs[v]]
          if (t > 0) printf " %s %s %.2f×;", vs[v], mode, k / t
        }
      }
      printf "\n"
    }
    if (nn >= 2) {
      lo = ns[1]; hi = ns[nn]
      printf "\nScaling, %d vs %d records (goal: time ≤ 3×, memory ≤ 1.5×):\n\n", hi, lo
      print "| command | version | time ratio | memory ratio |"
      print "|---|---|---|---|"
      for (ci = 1; ci <= 3; ci++) {
        c = (ci == 1 ? "stats" : ci == 2 ? "stats-again" : "inspect")
        for (v = 1; v <= nv; v++) {
          t0 = secs[lo, c, vs[v]]; t1 = secs[hi, c, vs[v]]
          r0 = rss[lo, c, vs[v]]; r1 = rss[hi, c, vs[v]]
          printf "| %s | %s | %.1f× | %.1f× |\n", label(c), vs[v], (t0 > 0 ? t1 / t0 : 0), (r0 > 0 ? r1 / r0 : 0)
        }
      }
    }
  }' "$results"
