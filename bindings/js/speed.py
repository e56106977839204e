"""Prints the Node numbers (stdin, JSON lines from bench.mjs) beside the native ones ($NATIVE)."""
import json
import os
import sys

native = {w["name"]: w["ops_per_s"] for w in json.loads(os.environ["NATIVE"])}
for line in sys.stdin:
    w = json.loads(line)
    n = native.get(w["name"])
    right = f"{n:>10,.0f}" if n else "         -"
    print(f"  {w['name']:<24} {w['ops_per_s']:>10,.0f} | {right}")
