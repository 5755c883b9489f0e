#!/usr/bin/env bash
# Template mining: dlq's miner against Python drain3, side by side in one run.
#
# Both sides read the labeled corpus (crates/dlq-core/tests/corpus/
# messages.jsonl, 2,526 messages in 91 true groups) through the same
# pipeline: root cause, masking (drain3 with MaskingInstructions mirroring
# dlq's masker), mining (drain3's defaults). drain3 comes from PyPI into a
# virtualenv under target/, pinned below. Rounds alternate dlq and drain3 so
# that a busy neighbour slows both; each side reports its best time per
# round; the table gives the best over rounds, the throughput ratio and the
# grouping accuracy of each (a message is correct when its cluster holds
# exactly the messages of its true group). dlq also runs in drain3 mode
# (MinerConfig::drain3(): no constant-word rule, no LRU bound), which must
# partition the messages exactly as drain3 does on dlq's prepared text.
#
#   scripts/bench-mining.sh [ROUNDS]    # default 3
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
drain3_version=0.9.11
venv=target/bench-venv
corpus=crates/dlq-core/tests/corpus

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

results=target/bench-mining.jsonl
: >"$results"
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds"
  "$mine" --quiet --json --repeat 20 | sed 's/^/{"round": '"$round"', "side": "dlq", "r": /; s/$/}/' >>"$results"
  "$mine" --quiet --json --drain3 --repeat 20 | sed 's/^/{"round": '"$round"', "side": "dlq-drain3-mode", "r": /; s/$/}/' >>"$results"
  "$venv/bin/python" "$corpus/drain3_baseline.py" --json --repeat 5 | sed 's/^/{"round": '"$round"', "side": "drain3", "r": /; s/$/}/' >>"$results"
done

# Same partition check: drain3 on dlq's prepared text against dlq's drain3 mode.
"$mine" --quiet --drain3 --repeat 1 --dump-prepared target/bench-prepared.jsonl --dump-clusters target/bench-clusters.txt >/dev/null
same=$("$venv/bin/python" "$corpus/drain3_baseline.py" --json --repeat 1 \
  --compare-prepared target/bench-prepared.jsonl --compare-clusters target/bench-clusters.txt)

python3 - "$results" "$same" "$drain3_version" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
same = json.loads(sys.argv[2])
best = {}
for r in rows:
    side, res = r["side"], r["r"]
    if side not in best or res["messages_per_second"] > best[side]["messages_per_second"]:
        best[side] = res
d3 = best["drain3"]["messages_per_second"]
print()
print("| implementation | messages/s (best) | × drain3 | clusters | grouping accuracy |")
print("|---|--:|--:|--:|--:|")
names = {"dlq": "dlq miner (default)", "dlq-drain3-mode": "dlq miner, drain3 mode",
         "drain3": f"Python drain3 {sys.argv[3]}"}
for side in ["dlq", "dlq-drain3-mode", "drain3"]:
    r = best[side]
    print(f"| {names[side]} | {r['messages_per_second']:,.0f} | {r['messages_per_second'] / d3:.1f} | "
          f"{r['clusters']} | {r['accuracy']:.4f} |")
print()
print(f"messages: {best['dlq']['messages']}; rounds: {len(rows) // 3}")
print(f"masking differs from dlq on {same.get('prepared_differently')} messages; "
      f"drain3 on dlq's prepared text partitions like dlq's drain3 mode: {same.get('same_partition_as_dlq_drain3_mode')}")
EOF
