#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets from the reference vectors (../vectors)."""
import hashlib
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
vectors = os.path.join(here, "..", "vectors", "tde2e")
corpus = os.path.join(here, "corpus")


def put(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def load(name):
    with open(os.path.join(vectors, name)) as f:
        return json.load(f)


blocks, broadcasts, packets = [], [], []
for name in sorted(os.listdir(vectors)):
    if name.startswith("chain_"):
        blocks += [bytes.fromhex(s["block"]) for s in load(name)["steps"]]
for case in load("invalid_blocks.json"):
    blocks += [bytes.fromhex(b) for b in case["chain"]] + [bytes.fromhex(case["block"])]
join = load("join.json")
blocks += [bytes.fromhex(c["block"]) for c in join["self_add"] + join["zero_block"]]
b = load("broadcasts.json")
broadcasts += [bytes.fromhex(e["broadcast"]) for e in b["events"]]
p = load("packets.json")
packets += [bytes.fromhex(e["packet"]) for e in p["events"] if "packet" in e]
packets += [bytes.fromhex(d["packet"]) for d in p["deterministic"]]

for x in blocks + broadcasts + packets:
    put("wire_decode", x)
    # Plain form too (constructor id - 1).
    if len(x) >= 4:
        m = (int.from_bytes(x[:4], "little") - 1) & 0xFFFFFFFF
        put("wire_decode", m.to_bytes(4, "little") + x[4:])
for x in blocks:
    put("chain_apply", x)
for x in broadcasts:
    put("broadcast_receive", x)
for x in packets:
    put("packet_decrypt", x)
print(f"seed corpora written under {corpus}", file=sys.stderr)
