#!/usr/bin/env python3
"""Runs OpenSSL's `openssl speed` and `confchain bench --json` in the same run on this machine and
prints every packet and block-building workload against its best floor: the time its primitives
must take with the fastest implementation of each primitive available here (confchain's own or
OpenSSL's).

A packet's floor: one signature (or verification), AES-256-CBC and HMAC-SHA256 over the payload,
and the 10 SHA-512 compressions of its fixed key derivations (see PACKET_FIXED_SHA512_BLOCKS in
benches/workloads.rs). Building a key-rotation block: one X25519 per member, plus two signatures
(the block's, and the ephemeral key pair, a fixed-base multiplication priced as one). Applying it:
one verification, SHA-512 (inside the verification) and SHA-256 (the block's hash) over the
block's bytes, one X25519 and the 16 SHA-512 compressions that open our key. The signer's key
arrives as bytes, so its verification is priced with the key's decoding (which OpenSSL's
verification always includes).

This machine's speed drifts by several percent within a run, so each workload is priced with
confchain's primitives measured right before and after it (`confchain bench` does that) and
OpenSSL's measured before and after confchain's run; every number is the median of three rounds.

Usage: python3 benches/compare_openssl.py [--quick] [--rounds N] [--features F] [--only TEXT]
(needs `openssl` on PATH; builds the CLI with the `cli` feature plus F, e.g. `openssl-sha512`; --only
runs the workloads whose name contains TEXT)
"""
import json
import re
import statistics
import subprocess
import sys

quick = "--quick" in sys.argv
rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
secs = "1" if quick else "3"
features = ",".join(["cli"] + ([sys.argv[sys.argv.index("--features") + 1]] if "--features" in sys.argv else []))
only = [sys.argv[sys.argv.index("--only") + 1]] if "--only" in sys.argv else []
PACKET_FIXED_SHA512_BLOCKS = 10
BLOCK_APPLY_FIXED_SHA512_BLOCKS = 16


def speed(args):
    out = subprocess.run(["openssl", "speed", "-seconds", secs, *args], capture_output=True, text=True).stdout
    return out


def evp_rate(name, decrypt=False):
    """Bytes/s of the 16 KiB column."""
    out = speed((["-decrypt"] if decrypt else []) + ["-evp", name])
    line = [l for l in out.splitlines() if l.lower().startswith(name.lower())][-1]
    return float(line.split()[-1].rstrip("k")) * 1000


UNITS = {"sign": "/s", "verify": "/s", "verify_key_bytes": "/s", "x25519": "/s", "aes_enc": " MB/s", "aes_dec": " MB/s",
         "sha256": " MB/s", "sha512": " MB/s"}


def openssl_rates():
    rates = {
        "aes_enc": evp_rate("aes-256-cbc"),
        "aes_dec": evp_rate("aes-256-cbc", decrypt=True),
        "sha256": evp_rate("sha256"),
        "sha512": evp_rate("sha512"),
    }
    ed = re.search(r"Ed25519\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", speed(["ed25519"]))
    rates["sign"], rates["verify"] = float(ed.group(1)), float(ed.group(2))
    # OpenSSL decodes the public key in every verification.
    rates["verify_key_bytes"] = rates["verify"]
    x = re.search(r"X25519\)\s+\S+\s+([\d.]+)", speed(["ecdhx25519"]))
    rates["x25519"] = float(x.group(1))
    return rates


# confchain's primitive names, and the factor from its ops/s to this script's unit.
OURS = {
    "sign": ("primitives/ed25519_sign", 1),
    "verify": ("primitives/ed25519_verify", 1),
    "verify_key_bytes": ("primitives/ed25519_verify_key_bytes", 1),
    "x25519": ("primitives/x25519_shared_secret", 1),
    "aes_enc": ("primitives/aes256_cbc_encrypt_64k", 65536),
    "aes_dec": ("primitives/aes256_cbc_decrypt_64k", 65536),
    "sha256": ("primitives/hmac_sha256_64k", 65536),
    "sha512": ("primitives/sha512_64k", 65536),
}


def mean_rate(a, b):
    """The rate of the mean time per operation of two measurements."""
    return 2 / (1 / a + 1 / b)


def one_round():
    """Primitive rates of both implementations and confchain's workloads, measured once: OpenSSL
    before and after confchain's run, confchain's primitives right before and after each workload."""
    before = openssl_rates()
    cmd = ["cargo", "run", "--release", "--quiet", "--features", features, "--", "bench", "--json"] + (["--quick"] if quick else []) + only
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"confchain bench failed:\n{run.stderr}")
    ours = {w["name"]: w for w in json.loads(run.stdout)}
    after = openssl_rates()
    openssl = {k: mean_rate(before[k], after[k]) for k in before}
    mine = {k: ours[name]["ops_per_s"] * unit for k, (name, unit) in OURS.items()}

    floors = {}  # workload -> (ops/s, best floor in seconds, label)
    for name, w in ours.items():
        adjacent = w.get("adjacent_primitives", {})
        best = {k: max(adjacent.get(OURS[k][0], mine[k] / unit) * unit, openssl[k]) for k, (_, unit) in OURS.items()}
        m = re.match(r"packet_(encrypt|decrypt)/(\d+)", name)
        if m:
            size = int(m.group(2))
            sig, aes = ("sign", "aes_enc") if m.group(1) == "encrypt" else ("verify", "aes_dec")
            fixed = PACKET_FIXED_SHA512_BLOCKS * 128 / best["sha512"]
            floors[name] = (w["ops_per_s"], 1 / best[sig] + size / best[aes] + size / best["sha256"] + fixed, f"`{name}`")
        m = re.match(r"block_build/(\d+)", name)
        if m:
            n = int(m.group(1))
            floors[name] = (w["ops_per_s"], n / best["x25519"] + 2 / best["sign"], f"`{name}`")
        if name.startswith("block_apply/"):
            size = w["block_bytes"]
            fixed = BLOCK_APPLY_FIXED_SHA512_BLOCKS * 128 / best["sha512"]
            floor_s = 1 / best["verify_key_bytes"] + size / best["sha512"] + size / best["sha256"] + 1 / best["x25519"] + fixed
            floors[name] = (w["ops_per_s"], floor_s, f"`{name}` ({size:,} B)")
    return mine, openssl, floors


results = [one_round() for _ in range(rounds)]
med = statistics.median

print(f"Primitives (median of {rounds} rounds):")
print()
print("| primitive | confchain | OpenSSL | best |")
print("| --- | ---: | ---: | ---: |")
for k in UNITS:
    scale = 1e6 if UNITS[k].endswith("MB/s") else 1
    m, o = med(r[0][k] for r in results), med(r[1][k] for r in results)
    print(f"| {k} | {m / scale:,.0f}{UNITS[k]} | {o / scale:,.0f}{UNITS[k]} | {'confchain' if m >= o else 'OpenSSL'} |")

print()
print(f"Workloads (median of {rounds} rounds; the ratio is each round's own, then the median):")
print()
print("| workload | confchain ops/s | best floor ops/s | time / best floor | rounds |")
print("| --- | ---: | ---: | ---: | --- |")
for name, (_, _, label) in results[0][2].items():
    ops = med(r[2][name][0] for r in results)
    floor_ops = med(1 / r[2][name][1] for r in results)
    ratios = [1 / (r[2][name][0] * r[2][name][1]) for r in results]
    digits = 1 if ops < 1000 else 0
    print(f"| {label} | {ops:,.{digits}f} | {floor_ops:,.{digits}f} | {med(ratios):.2f}× | {', '.join(f'{x:.2f}' for x in ratios)} |")
