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

Usage: python3 benches/compare_openssl.py [--quick]   (needs `openssl` on PATH; builds the CLI)
"""
import json
import re
import subprocess
import sys

quick = "--quick" in sys.argv
secs = "1" if quick else "3"
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


openssl = {
    "aes_enc": evp_rate("aes-256-cbc"),
    "aes_dec": evp_rate("aes-256-cbc", decrypt=True),
    "sha256": evp_rate("sha256"),
    "sha512": evp_rate("sha512"),
}
ed = re.search(r"Ed25519\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", speed(["ed25519"]))
openssl["sign"], openssl["verify"] = float(ed.group(1)), float(ed.group(2))
# OpenSSL decodes the public key in every verification.
openssl["verify_key_bytes"] = openssl["verify"]
x = re.search(r"X25519\)\s+\S+\s+([\d.]+)", speed(["ecdhx25519"]))
openssl["x25519"] = float(x.group(1))

cmd = ["cargo", "run", "--release", "--quiet", "--features", "cli", "--", "bench", "--json"] + (["--quick"] if quick else [])
ours = {w["name"]: w for w in json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)}
mine = {
    "sign": ours["primitives/ed25519_sign"]["ops_per_s"],
    "verify": ours["primitives/ed25519_verify"]["ops_per_s"],
    "verify_key_bytes": ours["primitives/ed25519_verify_key_bytes"]["ops_per_s"],
    "x25519": ours["primitives/x25519_shared_secret"]["ops_per_s"],
    "aes_enc": ours["primitives/aes256_cbc_encrypt_64k"]["ops_per_s"] * 65536,
    "aes_dec": ours["primitives/aes256_cbc_decrypt_64k"]["ops_per_s"] * 65536,
    "sha256": ours["primitives/hmac_sha256_64k"]["ops_per_s"] * 65536,
    "sha512": ours["primitives/sha512_64k"]["ops_per_s"] * 65536,
}
best = {k: max(mine[k], openssl[k]) for k in mine}

print("| primitive | confchain | OpenSSL | best |")
print("| --- | ---: | ---: | ---: |")
units = {"sign": "/s", "verify": "/s", "verify_key_bytes": "/s", "x25519": "/s", "aes_enc": " MB/s", "aes_dec": " MB/s", "sha256": " MB/s", "sha512": " MB/s"}
for k in mine:
    scale = 1e6 if units[k].endswith("MB/s") else 1
    print(f"| {k} | {mine[k] / scale:,.0f}{units[k]} | {openssl[k] / scale:,.0f}{units[k]} | {'confchain' if mine[k] >= openssl[k] else 'OpenSSL'} |")

print()
print("| workload | confchain ops/s | best floor ops/s | time / best floor |")
print("| --- | ---: | ---: | ---: |")
for name, w in ours.items():
    m = re.match(r"packet_(encrypt|decrypt)/(\d+)", name)
    if not m:
        continue
    size = int(m.group(2))
    sig, aes = ("sign", "aes_enc") if m.group(1) == "encrypt" else ("verify", "aes_dec")
    fixed = PACKET_FIXED_SHA512_BLOCKS * 128 / best["sha512"]
    floor_s = 1 / best[sig] + size / best[aes] + size / best["sha256"] + fixed
    print(f"| `{name}` | {w['ops_per_s']:,.0f} | {1 / floor_s:,.0f} | {1 / (w['ops_per_s'] * floor_s):.2f}× |")
for name, w in ours.items():
    m = re.match(r"block_build/(\d+)", name)
    if m:
        n = int(m.group(1))
        floor_s = n / best["x25519"] + 2 / best["sign"]
        print(f"| `{name}` | {w['ops_per_s']:,.1f} | {1 / floor_s:,.1f} | {1 / (w['ops_per_s'] * floor_s):.2f}× |")
for name, w in ours.items():
    if name.startswith("block_apply/"):
        size = w["block_bytes"]
        fixed = BLOCK_APPLY_FIXED_SHA512_BLOCKS * 128 / best["sha512"]
        floor_s = 1 / best["verify_key_bytes"] + size / best["sha512"] + size / best["sha256"] + 1 / best["x25519"] + fixed
        print(f"| `{name}` ({size:,} B) | {w['ops_per_s']:,.0f} | {1 / floor_s:,.0f} | {1 / (w['ops_per_s'] * floor_s):.2f}× |")
