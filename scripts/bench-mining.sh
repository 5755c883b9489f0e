#!/usr/bin/env bash
# Template mining: dlq's miner against Python drain3, side by side in one run,
# on the project's labeled corpus and (optionally) on Loghub-2k.
#
#   scripts/bench-mining.sh [--loghub DIR] [--rounds N]
#
# DIR (or $DLQ_LOGHUB_DIR) holds Loghub's 16 `*_2k.log_structured.csv`
# files (https://github.com/logpai/loghub, the 2k samples, each with its
# `Content` and true `EventId`); they are not part of the repository. Without
# it, only the own corpus (crates/dlq-core/tests/corpus/messages.jsonl) runs.
#
# Sides, on every dataset:
#   * dlq: the default miner (MinerConfig::default(), algorithm version 2);
#   * dlq v1: the algorithm version 1, which miners saved by earlier versions
#     keep;
#   * drain3: Python drain3 from PyPI (pinned below, in a virtualenv under
#     target/) through the same root-cause rules and a regex port of dlq's
#     version 1 masking, with drain3's defaults.
# One configuration for everything: nothing is set per dataset. Grouping
# accuracy (GA): a message is correct when its cluster holds exactly the
# messages of its true group. Throughput: the whole pipeline per message
# (root cause, masking, mining), not reading the file; single thread; best of
# 20 repetitions per round for dlq, 3 for drain3; the best round is reported.
# Rounds alternate the sides so a busy neighbour slows all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
loghub="${DLQ_LOGHUB_DIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --loghub) loghub="${2:?--loghub needs a directory}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$loghub" ] && ! ls "$loghub"/*_2k.log_structured.csv >/dev/null 2>&1; then
  echo "no *_2k.log_structured.csv in $loghub (get them from https://github.com/logpai/loghub)" >&2
  exit 2
fi

drain3_version=0.9.11
venv=target/bench-venv
corpus=crates/dlq-core/tests/corpus
work=target/bench-mining
mkdir -p "$work/data"

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import drain3" 2>/dev/null; then
  echo "== pip install drain3==$drain3_version"
  "$venv/bin/pip" install -q "drain3==$drain3_version"
fi

echo "== building mine_corpus (release)"
cargo build -q --release --locked -p dlq-core --example mine_corpus
mine=target/release/examples/mine_corpus

# Datasets: name and JSON-lines file ({"group", "message"} per line).
datasets=("own:$corpus/messages.jsonl")
if [ -n "$loghub" ]; then
  found=$(ls "$loghub"/*_2k.log_structured.csv | wc -l)
  echo "== converting $found Loghub files"
  python3 - "$loghub" "$work/data" <<'EOF'
import csv, glob, json, os, sys
src, dst = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(os.path.join(src, "*_2k.log_structured.csv"))):
    name = os.path.basename(path).split("_")[0]
    with open(path, newline="", encoding="utf-8") as f, open(os.path.join(dst, name + ".jsonl"), "w") as out:
        for row in csv.DictReader(f):
            out.write(json.dumps({"group": row["EventId"], "message": row["Content"]}) + "\n")
EOF
  for f in "$work"/data/*.jsonl; do
    datasets+=("$(basename "$f" .jsonl):$f")
  done
fi

results="$work/results.jsonl"
: >"$results"
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds"
  for d in "${datasets[@]}"; do
    name="${d%%:*}"
    file="${d#*:}"
    tag='{"round": '"$round"', "dataset": "'"$name"'", "side": '
    "$mine" "$file" --quiet --json --repeat 20 | sed "s/^/$tag\"dlq\", \"r\": /; s/\$/}/" >>"$results"
    "$mine" "$file" --quiet --json --repeat 20 --version 1 | sed "s/^/$tag\"dlq-v1\", \"r\": /; s/\$/}/" >>"$results"
    "$venv/bin/python" "$corpus/drain3_baseline.py" "$file" --json --repeat 3 | sed "s/^/$tag\"drain3\", \"r\": /; s/\$/}/" >>"$results"
  done
done

# Same partition check on the own corpus: drain3 on dlq's prepared text
# against dlq's drain3 mode (the algorithms agree, the speed-up is the
# implementation's).
"$mine" --quiet --drain3 --repeat 1 --dump-prepared "$work/prepared.jsonl" --dump-clusters "$work/clusters.txt" >/dev/null
same=$("$venv/bin/python" "$corpus/drain3_baseline.py" --json --repeat 1 \
  --compare-prepared "$work/prepared.jsonl" --compare-clusters "$work/clusters.txt")

python3 - "$results" "$same" "$drain3_version" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
same = json.loads(sys.argv[2])
best = {}
for r in rows:
    key = (r["dataset"], r["side"])
    if key not in best or r["r"]["messages_per_second"] > best[key]["messages_per_second"]:
        best[key] = r["r"]
names = []
for r in rows:
    if r["dataset"] not in names:
        names.append(r["dataset"])
sides = ["dlq", "dlq-v1", "drain3"]
print()
print(f"| dataset | messages | GA dlq | GA dlq v1 | GA drain3 {sys.argv[3]} | dlq messages/s | dlq v1 messages/s | drain3 messages/s |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
def row(label, n, ga, speed):
    print(f"| {label} | {n:,} | " + " | ".join(f"{g:.4f}" for g in ga) + " | "
          + " | ".join(f"{s:,.0f}" for s in speed) + " |")
for d in names:
    b = [best[(d, s)] for s in sides]
    row("own corpus" if d == "own" else d, b[0]["messages"], [x["accuracy"] for x in b],
        [x["messages_per_second"] for x in b])
loghub = [d for d in names if d != "own"]
if loghub:
    n = sum(best[(d, "dlq")]["messages"] for d in loghub)
    ga = [sum(best[(d, s)]["accuracy"] for d in loghub) / len(loghub) for s in sides]
    # Throughput over all of Loghub: messages over the summed best times.
    speed = [n / sum(best[(d, s)]["seconds"] for d in loghub) for s in sides]
    row(f"**Loghub-2k mean** ({len(loghub)} datasets)", n, ga, speed)
print()
print(f"rounds: {len(rows) // (3 * len(names))}")
print(f"own corpus: masking differs from dlq on {same.get('prepared_differently')} messages; "
      f"drain3 on dlq's prepared text partitions like dlq's drain3 mode: {same.get('same_partition_as_dlq_drain3_mode')}")
EOF
