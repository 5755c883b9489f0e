#!/usr/bin/env python3
"""The drain3 side of the template-mining benchmark.

Runs Python drain3 (pip install drain3) over the same messages as dlq's
`mine_corpus` example, through the same pipeline: the same root-cause rules
(a Python port of crates/dlq-core/src/mine/cause.rs), then drain3's own
masking with MaskingInstructions that mirror dlq's Masker
(crates/dlq-core/src/mine/mask.rs, `Masker::new`, the masking of the
miner's algorithm version 1), then drain3's TemplateMiner with its
defaults (sim_th 0.4, depth 4, max_children 100, "<*>"). It prints
messages/s and the grouping accuracy, defined as in
tests/template_accuracy.rs: a message is correct when its cluster holds
exactly the messages of its true group.

    python3 drain3_baseline.py [FILE] [--repeat N] [--json]
                               [--compare-prepared PATH [--compare-clusters PATH]]

FILE defaults to messages.jsonl next to this script; a line that is a JSON
object with "message" (and "group") is read as such, any other line is a
message. With --compare-prepared PATH (a file written by
`mine_corpus --dump-prepared PATH`), it also reports how many messages the
regex masking prepares differently from dlq's scanner, and drain3's accuracy
on dlq's prepared text (the algorithms compared on identical input). With
--compare-clusters PATH (from `mine_corpus --drain3 --dump-clusters PATH`, same
file, same order) it checks that drain3 on dlq's prepared text partitions the
messages exactly as dlq's drain3 mode does.
"""

import argparse
import json
import os
import re
import sys
import time

from drain3 import TemplateMiner
from drain3.masking import AbstractMaskingInstruction, MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# ---------------------------------------------------------------------------
# Root cause (port of cause.rs)
# ---------------------------------------------------------------------------

TRACEBACK = "Traceback (most recent call last):"
CHAIN_MARKERS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
CAUSED_BY = "Caused by: "
NESTED = "; nested exception is "
WRAPPERS = ("Listener failed: ", "Listener failed; ")
THREAD = 'Exception in thread "'
DETAIL_FIELDS = ("DETAIL:", "HINT:", "CONTEXT:", "QUERY:", "STATEMENT:", "LOCATION:", "Detail:", "Hint:",
                 "Where:", "Position:", "Location:", "Server SQLState:")


def _lines(s):
    out = []
    start = 0
    for line in s.split("\n"):
        out.append((start, line[:-1] if line.endswith("\r") else line))
        start += len(line) + 1
    return out


def _python_innermost(s, lines):
    in_tb = False
    begin = None
    for at, line in lines:
        if begin is None:
            if not in_tb:
                in_tb = line.rstrip() == TRACEBACK
            elif not line.startswith((" ", "\t")) and line.strip():
                begin = at
        else:
            t = line.strip()
            if not t or t == TRACEBACK or t in CHAIN_MARKERS:
                return s[begin:at]
    return None if begin is None else s[begin:]


def _ends_primary(line):
    t = line.strip()
    if not t:
        return True
    return ((t.startswith("at ") and not t.startswith("at [") and t.endswith(")"))
            or (t.startswith("... ") and t.endswith(" more"))
            or t.startswith(("Caused by:", "Suppressed:", 'File "'))
            or t.startswith(DETAIL_FIELDS))


def root_cause(message):
    multiline = "\n" in message
    s = message
    if multiline:
        lines = _lines(s)
        py = _python_innermost(s, lines)
        if py is not None:
            s = py
        else:
            found = None
            for at, line in lines:
                if line.startswith(CAUSED_BY) and line[len(CAUSED_BY):].strip():
                    found = at + len(CAUSED_BY)
            if found is not None:
                s = s[found:]
    elif s.startswith(CAUSED_BY) and s[len(CAUSED_BY):].strip():
        s = s[len(CAUSED_BY):]
    pos = s.rfind(NESTED)
    if pos >= 0 and s[pos + len(NESTED):].strip():
        s = s[pos + len(NESTED):]
    while True:
        before = len(s)
        for w in WRAPPERS:
            if s.startswith(w) and s[len(w):].strip():
                s = s[len(w):]
        if s.startswith(THREAD):
            rest = s[len(THREAD):]
            end = rest.find('" ')
            if end >= 0 and rest[end + 2:].strip():
                s = rest[end + 2:]
        if len(s) == before:
            break
    if multiline:
        for at, line in _lines(s)[1:]:
            if _ends_primary(line):
                s = s[:at]
                break
    s = s.strip()
    return s if s else message.strip()


# ---------------------------------------------------------------------------
# Masking: drain3 MaskingInstructions mirroring mask.rs
# ---------------------------------------------------------------------------

class CallbackInstruction(AbstractMaskingInstruction):
    """A regex whose replacement is computed per match (drain3's
    MaskingInstruction only substitutes a fixed string)."""

    def __init__(self, pattern, mask_with, fn):
        super().__init__(mask_with)
        self.regex = re.compile(pattern)
        self.fn = fn

    def mask(self, content, mask_prefix, mask_suffix):
        placeholder = mask_prefix + self.mask_with + mask_suffix
        return self.regex.sub(lambda m: self.fn(m, placeholder), content)


WS = r"\s"
START = r"(?:^|(?<=[\s(\[{=:,]))"  # a value may start here
WORD = r"(?<![A-Za-z0-9])"
END = r"(?![A-Za-z0-9])"

QUOTED_RE = (r"(?:^|(?<=[\s(\[{=:,)]))([\"'`])"
             r"((?:\\[\s\S]|[^\\\n]){0,1}?|(?:\\[\s\S]|[^\\\n]){2,1023}?(?<![:,{\[]))"
             r"\1(?=[)\]}>,;:.!?]*(?:\s|\Z))")
QUOTED_COMPILED = re.compile(QUOTED_RE)


def _quoted(m, placeholder):
    q, content = m.group(1), m.group(2)
    if len(content) == 1 and content in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
        return m.group(0)
    if ": " in content:
        # A nested message: keep the quotes, mask inside (quotes only here;
        # the later instructions run over the whole text anyway).
        return q + QUOTED_COMPILED.sub(lambda n: _quoted(n, placeholder), content) + q
    return placeholder


def _trim_url(m, placeholder):
    u = m.group(0)
    start_len = len(m.group(1)) + 3
    e = len(u)
    while e > start_len:
        last = u[e - 1]
        body = u[:e]
        if last in ".,;:!?":
            e -= 1
        elif last == ")" and body.count("(") < body.count(")"):
            e -= 1
        elif last == "]" and body.count("[") < body.count("]"):
            e -= 1
        elif last == "}" and body.count("{") < body.count("}"):
            e -= 1
        else:
            break
    return placeholder + u[e:]


def _trim_path(m, placeholder):
    p = m.group(0)
    e = len(p)
    while e > 1 and p[e - 1] in ".:!?":
        e -= 1
    return placeholder + p[e:]


NAME = r"[A-Za-z0-9._\-]"
ITEM = r"(?=[^\s\[\]{}(),=]*[A-Za-z])[^\s\[\]{}(),=]+"
MASKING = [
    MaskingInstruction(START + r"\[" + ITEM + r"(?:, *" + ITEM + r")*\]", "LIST"),
    CallbackInstruction(QUOTED_RE, "QUOTED", _quoted),
    CallbackInstruction(r"(?<![A-Za-z0-9+.\-_])([A-Za-z][A-Za-z0-9+.\-_]*)://[^\s\"'`<>]+", "URL", _trim_url),
    CallbackInstruction(r"(?:^|(?<=[\s(\[{=:,\"']))/[A-Za-z0-9._~\-][^\s\"'`<>()\[\]{},;|]*", "PATH", _trim_path),
    MaskingInstruction(WORD + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + END, "UUID"),
    MaskingInstruction(WORD + r"(?:\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                       r"(?:[Zz]|[+-]\d{2}(?::\d{2}|\d{2})?)?)?|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?)" + END, "TS"),
    MaskingInstruction(r"(?<![A-Za-z0-9._\-])" + NAME + r"+/\d{1,3}(?:\.\d{1,3}){3}(?!\.\d)"
                       r"(?::\d+" + END + r")?" + END, "IP"),
    MaskingInstruction(WORD + r"\d{1,3}(?:\.\d{1,3}){3}(?!\.\d)(?::\d+" + END + r")?" + END, "IP"),
    MaskingInstruction(r"(?<![A-Za-z0-9._\-])" + NAME + r"+-\d+@\d+" + END, "KAFKA_COORD"),
    MaskingInstruction(WORD + r"(?i:partition)" + END + r"(?: +(?:[=:] *)?|[=:] *)"
                       r"(?:\d+" + END + r"|" + NAME + r"+-\d+(?![A-Za-z0-9._\-]))"
                       r"(?:, *| +)(?:(?i:at)" + END + r" *)?(?i:offset)" + END + r"(?: +(?:[=:] *)?|[=:] *)\d+" + END,
                       "KAFKA_COORD"),
    MaskingInstruction(WORD + r"0[xX][0-9a-fA-F]+" + END, "HEX"),
    MaskingInstruction(WORD + r"(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}" + END, "HEX"),
    MaskingInstruction(WORD + r"(?!\d+[eE][+-]?\d+" + END + r")\d+[a-fA-F][0-9a-fA-F]*\d[0-9a-fA-F]*" + END, "HEX"),
    MaskingInstruction(WORD + r"(?!\d+[eE][+-]?\d+" + END + r")\d+[A-Za-z]+\d[A-Za-z0-9]*" + END, "ID"),
    MaskingInstruction(r"(?:(?:^|(?<=[\s(\[{=:,]))[+-])?" + WORD + r"\d+(?:\.\d+)*(?:[eE][+-]?\d+)?(?![0-9])"
                       r"(?=[A-Za-z]*" + END + r")", "NUM"),
]


def make_miner():
    config = TemplateMinerConfig()  # drain3's defaults
    config.drain_sim_th = 0.4
    config.drain_depth = 4
    config.drain_max_children = 100
    config.drain_max_clusters = None
    config.mask_prefix = "<"
    config.mask_suffix = ">"
    config.parametrize_numeric_tokens = True
    config.masking_instructions = MASKING
    config.profiling_enabled = False
    return TemplateMiner(persistence_handler=None, config=config)


def accuracy(labels, ids):
    per_label, per_cluster, per_pair = {}, {}, {}
    for l, c in zip(labels, ids):
        per_label[l] = per_label.get(l, 0) + 1
        per_cluster[c] = per_cluster.get(c, 0) + 1
        per_pair[(l, c)] = per_pair.get((l, c), 0) + 1
    correct = sum(1 for l, c in zip(labels, ids)
                  if per_label[l] == per_cluster[c] and per_pair[(l, c)] == per_label[l])
    return correct / len(labels)


def read(path):
    messages, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                v = None
            if isinstance(v, dict) and isinstance(v.get("message"), str):
                messages.append(v["message"])
                labels.append(v.get("group"))
            else:
                messages.append(line)
                labels.append(None)
    return messages, labels


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default=os.path.join(here, "messages.jsonl"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compare-prepared")
    ap.add_argument("--compare-clusters")
    args = ap.parse_args()

    messages, labels = read(args.file)
    best = float("inf")
    ids = None
    miner = None
    for _ in range(max(1, args.repeat)):
        miner = make_miner()
        add = miner.add_log_message
        start = time.perf_counter()
        ids = [add(root_cause(m))["cluster_id"] for m in messages]
        best = min(best, time.perf_counter() - start)
    per_sec = len(messages) / best
    acc = accuracy(labels, ids) if all(l is not None for l in labels) and labels else None
    result = {
        "implementation": "drain3",
        "drain3_version": getattr(sys.modules.get("drain3"), "__version__", None) or _drain3_version(),
        "messages": len(messages),
        "seconds": best,
        "messages_per_second": per_sec,
        "clusters": len(miner.drain.clusters),
        "accuracy": acc,
    }
    if args.compare_prepared:
        with open(args.compare_prepared, encoding="utf-8") as f:
            theirs = [json.loads(l) for l in f.read().splitlines()]
        ours = [miner.masker.mask(root_cause(m)) for m in messages]
        differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if " ".join(a.split()) != " ".join(b.split())]
        result["prepared_differently"] = len(differ)
        result["prepared_differently_examples"] = [{"drain3": ours[i], "dlq": theirs[i]} for i in differ[:10]]
        same_input = make_miner()
        same_input.masker.masking_instructions = []
        same_ids = [same_input.add_log_message(p)["cluster_id"] for p in theirs]
        result["accuracy_on_dlq_prepared_input"] = (accuracy(labels, same_ids) if acc is not None else None)
        result["clusters_on_dlq_prepared_input"] = len(same_input.drain.clusters)
        if args.compare_clusters:
            with open(args.compare_clusters, encoding="utf-8") as f:
                dlq_ids = f.read().split()
            forward, backward = {}, {}
            same = len(dlq_ids) == len(same_ids) and all(
                forward.setdefault(a, b) == b and backward.setdefault(b, a) == a
                for a, b in zip(same_ids, dlq_ids))
            result["same_partition_as_dlq_drain3_mode"] = same
    if args.json:
        print(json.dumps(result))
    else:
        print(f"drain3: {len(messages)} messages in {best * 1e3:.1f} ms (best of {args.repeat}): "
              f"{per_sec:.0f} messages/s, {result['clusters']} clusters"
              + (f", grouping accuracy {acc:.4f}" if acc is not None else ""))
        if args.compare_prepared:
            print(f"  prepared differently from dlq: {result['prepared_differently']} of {len(messages)}")
            for ex in result["prepared_differently_examples"]:
                print(f"    drain3: {ex['drain3']!r}\n    dlq:    {ex['dlq']!r}")
            print(f"  drain3 on dlq's prepared text: accuracy {result['accuracy_on_dlq_prepared_input']:.4f}, "
                  f"{result['clusters_on_dlq_prepared_input']} clusters")
            if args.compare_clusters:
                print(f"  same partition as dlq's drain3 mode: {result['same_partition_as_dlq_drain3_mode']}")


def _drain3_version():
    try:
        from importlib.metadata import version
        return version("drain3")
    except Exception:  # noqa: BLE001 - only informative
        return None


if __name__ == "__main__":
    main()
