#!/usr/bin/env bash
# Builds the C ABI, checks the committed header is current, compiles the header as C99 and C++17
# with -Wall -Werror, and runs the C conference test against the reference vectors.
# `test.sh --regenerate` rewrites include/confchain.h instead of checking it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
# With the server model (`testkit`: the session test needs it; release builds, install.sh, leave it out).
cargo build --release -p confchain-c --features testkit
# The crate's own tests (freed RNG memory scanned for the key; media buffer bounds).
cargo test --release -p confchain-c --features testkit --quiet
lib="${CARGO_TARGET_DIR:-$root/target}/release"

command -v cbindgen >/dev/null 2>&1 || cargo install cbindgen --locked
generated="$(mktemp)"
cbindgen --config "$here/cbindgen.toml" --crate confchain-c --output "$generated" "$here" 2>/dev/null
if [ "${1:-}" = "--regenerate" ]; then
  cp "$generated" "$here/include/confchain.h"
elif ! cmp -s "$generated" "$here/include/confchain.h"; then
  diff -u "$here/include/confchain.h" "$generated" || true
  echo "include/confchain.h is stale: run bindings/c/test.sh --regenerate" >&2
  exit 1
fi

work="$(mktemp -d)"
printf '#include "confchain.h"\nint main(void) { return confchain_error_name(204)[0] == 0; }\n' > "$work/c99.c"
cc -std=c99 -Wall -Wextra -Werror -pedantic -I"$here/include" -c "$work/c99.c" -o "$work/c99.o"
printf '#include "confchain.h"\nint main() { return confchain_error_name(204)[0] == 0; }\n' > "$work/cpp17.cpp"
c++ -std=c++17 -Wall -Wextra -Werror -pedantic -I"$here/include" -c "$work/cpp17.cpp" -o "$work/cpp17.o"

python3 - "$root/vectors/tde2e/packets.json" > "$work/vectors.txt" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in v["keys"]:
    print("key", k["user_id"], k["private_key"])
blocks = v["blocks"]
print("invalid 204", blocks[0], blocks[2])
for e in v["events"]:
    if e["op"] == "apply_block":
        print("block", blocks[e["block_index"]])
    elif e["op"] == "decrypt" and e["expect"] == "ok":
        print("decrypt", e["receiver"], e["sender"], e["packet"], e["plaintext"])
PY
cc -std=c99 -Wall -Wextra -Werror -I"$here/include" "$here/tests/conference.c" "$lib/libconfchain.a" \
  -lpthread -ldl -lm -o "$work/conference"
"$work/conference" "$work/vectors.txt"
# Sessions through the server model (declared under CONFCHAIN_TESTKIT).
cc -std=c99 -Wall -Wextra -Werror -DCONFCHAIN_TESTKIT -I"$here/include" "$here/tests/session.c" "$lib/libconfchain.a" -lpthread -ldl -lm \
  -o "$work/session"
"$work/session"
# Outputs checked before anything is consumed; absurd counts and lengths refused.
cc -std=c99 -Wall -Wextra -Werror -I"$here/include" "$here/tests/buffers.c" "$lib/libconfchain.a" -lpthread -ldl -lm \
  -o "$work/buffers"
"$work/buffers"
# Media handles from several threads at once.
cc -std=c99 -Wall -Wextra -Werror -pthread -I"$here/include" "$here/tests/media_threads.c" "$lib/libconfchain.a" \
  -lpthread -ldl -lm -o "$work/media_threads"
"$work/media_threads"
# The media frame layer: tgcalls' vectors (vectors/frames/, as lines; whichever files exist), frames
# of every codec through a call and the media handles, the typed drops.
python3 - "$root/vectors/frames" > "$work/frames.txt" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
def h(s):
    return "null" if s is None else (s or "-")
def load(name):
    p = os.path.join(d, name)
    return json.load(open(p)) if os.path.exists(p) else None
send = load("send.json")
for c in send["cases"] if send else []:
    calls = c["calls"]
    assert all(x == calls[0] for x in calls), c["name"]
    first = calls[0] if calls else {"data": "", "prefix": -1}
    fakes = c["fake_outputs"]
    print("send", c["name"].replace(" ", "_"), c["payload_type"], c["codec"], c.get("audio_level", 0),
          int(c.get("has_speech", False)), h(c["frame"]), h(first["data"]), first["prefix"], len(calls), len(fakes),
          *[h(f) for f in fakes], h(c["sent"]))
receive = load("receive.json")
for c in receive["cases"] if receive else []:
    print("recv", c["name"].replace(" ", "_"), c["payload_type"], c["codec"], h(c["decrypted"]), h(c["delivered"]),
          -1 if c["level"] is None else c["level"], -1 if c["speech"] is None else int(c["speech"]))
levels = load("levels.json")
# Linear amplitudes as the f32 bits tgcalls computed with.
bits = lambda c: c.get("linear_f32_bits") or struct.pack(">f", c["linear"]).hex()
for c in levels["to_byte"] if levels else []:
    print("to_byte", bits(c), int(c.get("speech", False)), c.get("level", -1), c["byte"])
for c in levels["from_byte"] if levels else []:
    print("from_byte", c["byte"], bits(c))
print("vector files:", [n for n in ("send.json", "receive.json", "levels.json") if load(n)], file=sys.stderr)
PY
cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -I"$here/include" "$here/tests/frames.c" \
  "$lib/libconfchain.a" -lpthread -ldl -lm -o "$work/frames"
"$work/frames" "$work/frames.txt"
# The C++ header for tgcalls-based apps: tgcalls' e2eEncryptDecrypt callback over a call.
c++ -std=c++17 -Wall -Wextra -Werror -pedantic -pthread -I"$here/include" -I"$here/tests" "$here/tests/tgcalls.cpp" \
  "$lib/libconfchain.a" -lpthread -ldl -lm -o "$work/tgcalls"
"$work/tgcalls"
# The README's C snippet compiles (C99, warnings as errors) and runs.
python3 - "$root/README.md" > "$work/readme.c" <<'PY'
import re, sys
print(re.search(r"```c\n(.*?)```", open(sys.argv[1]).read(), re.S).group(1))
PY
cc -std=c99 -Wall -Wextra -Werror -I"$here/include" "$work/readme.c" "$lib/libconfchain.a" -lpthread -ldl -lm -o "$work/readme"
[ "$("$work/readme")" = "opus frame" ] || { echo "README C snippet failed" >&2; exit 1; }
echo "README C snippet: ok"
# The shared library links too.
cc -std=c99 -Wall -Werror -I"$here/include" "$here/tests/conference.c" -L"$lib" -lconfchain -o "$work/conference_so"
LD_LIBRARY_PATH="$lib" "$work/conference_so" > /dev/null
rm -rf "$work" "$generated"
