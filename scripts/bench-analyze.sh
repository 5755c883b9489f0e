#!/usr/bin/env bash
# `dlq analyze` over large embedded stores: records/s and peak memory.
#
# Fills a SQLite store with 100,000 and one with 1,000,000 realistic dead
# letters (crates/dlq-bench/src/bin/fill_store.rs: corpus error messages,
# MarketLag-like payloads, seven days of failures, two DLQs), then runs
# `dlq analyze --status all --format json` on each and reports wall time,
# records/s and peak RSS (GNU time's maximum resident set size). Memory that
# stays flat from 100k to 1M records is what "bounded" means here: the
# analysis keeps per-group counters, not records. The first analysis of a
# store also mines and saves its templates; a second run continues from them.
#
#   scripts/bench-analyze.sh [RECORDS...]     # default: 100000 1000000
#
# Stores are kept in target/bench-analyze/ (reused when present).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
dir=target/bench-analyze
mkdir -p "$dir"

if ! command -v /usr/bin/time >/dev/null; then
  echo "== installing GNU time"
  apt-get update -qq && apt-get install -y -qq time
fi

echo "== building dlq and fill_store (release)"
cargo build -q --release --locked -p dlq-cli -p dlq-bench --bin dlq --bin fill_store

printf '| records | run | seconds | records/s | peak RSS (MiB) | groups |\n|--:|---|--:|--:|--:|--:|\n' > "$dir/report.md"
for n in "${sizes[@]}"; do
  db="$dir/store-$n.db"
  if [ ! -f "$db" ]; then
    echo "== filling $db with $n records"
    target/release/fill_store --store "sqlite://$db" --records "$n"
  fi
  # Each size starts from a copy that was never analyzed (no saved
  # templates), then runs once more on it.
  work="$dir/work-$n.db"
  rm -f "$work" "$work-wal" "$work-shm"
  cp "$db" "$work"
  [ ! -f "$db-wal" ] || cp "$db-wal" "$work-wal"
  for run in first second; do
    out="$dir/analyze-$n-$run.json"
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" \
      target/release/dlq --store "sqlite://$work" --no-progress analyze --status all --format json >"$out"
    read -r secs kb <"$dir/time.txt"
    groups=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["groups"]))' "$out")
    python3 - "$n" "$run" "$secs" "$kb" "$groups" >>"$dir/report.md" <<'EOF'
import sys
n, run, secs, kb, groups = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"| {n:,} | {run} | {secs:.2f} | {n / secs:,.0f} | {kb / 1024:.1f} | {groups} |")
EOF
    tail -1 "$dir/report.md"
  done
done
echo
cat "$dir/report.md"
