#!/usr/bin/env python3
"""Conformance peer over confchain's Python module (`import confchain`, bindings/python).

Speaks conformance/PROTOCOL.md (version 1) on stdin/stdout. The module cannot replay recorded
randomness nor start a chain without a member key, so `rng` is false and `check_block` is not
offered: the runner skips what needs them and says so.

The frame operations are offered when the module has the frame layer (`frame_plaintext`, ...):
`frame_layout` and `frame_validate` (the module's send loop runs inside `Call.encrypt_frame` and
takes no fake encryption results, so `frame_send` is not offered), `frame_receive`, the levels,
`encrypt_frame` and `decrypt_frame`. A module without them runs every other check.
"""
import json
import os
import sys

import confchain as cc

OPS = [
    "create", "join", "apply_block", "receive_broadcast", "pull_outbound", "state",
    "build_change_state", "encrypt", "decrypt", "encrypt_message", "decrypt_message",
]

FRAME_OPS = [
    "frame_layout", "frame_validate", "frame_receive", "level_to_byte", "level_from_byte",
    "encrypt_frame", "decrypt_frame",
]
if hasattr(cc, "frame_plaintext"):
    OPS += FRAME_OPS


class Member:
    def __init__(self, user_id, key):
        self.user_id = user_id
        self.key = key
        self.call = None


class Peer:
    def __init__(self):
        self.rng = cc.Rng(os.urandom(32))
        self.members = {}

    def key(self, req):
        if req.get("private_key"):
            return cc.PrivateKey.from_bytes(bytes.fromhex(req["private_key"]))
        return cc.PrivateKey.generate(self.rng)

    def call(self, req):
        m = self.members.get(req["member"])
        if m is None or m.call is None:
            raise ValueError("member %r has no call yet" % req["member"])
        return m.call

    def op_create(self, req):
        key = self.key(req)
        me = cc.Participant(req["user_id"], key.public_key, req.get("flags", 7), req.get("version", 0))
        block = cc.create_zero_block(key, [me], req.get("external_permissions", 3), self.rng)
        self.members[req["member"]] = Member(req["user_id"], key)
        return {"public_key": key.public_key.hex(), "block": block.hex()}

    def op_join(self, req):
        key = self.key(req)
        me = cc.Participant(req["user_id"], key.public_key, req.get("flags", 3), req.get("version", 0))
        block = cc.create_self_add_block(key, bytes.fromhex(req["last_block"]), me, self.rng)
        self.members[req["member"]] = Member(req["user_id"], key)
        return {"public_key": key.public_key.hex(), "block": block.hex()}

    def op_apply_block(self, req):
        m = self.members[req["member"]]
        block = bytes.fromhex(req["block"])
        if m.call is None:
            # The first block after create/join is the one the server returned: the call starts there.
            m.call = cc.Call(m.user_id, m.key, block, self.rng)
        else:
            m.call.apply_block(block, req.get("now", 0), self.rng)
        return {}

    def op_receive_broadcast(self, req):
        self.call(req).receive_broadcast(bytes.fromhex(req["broadcast"]))
        return {}

    def op_pull_outbound(self, req):
        return {"broadcasts": [b.hex() for b in self.call(req).pull_outbound()]}

    def op_state(self, req):
        c = self.call(req)
        return {
            "height": c.height,
            "participants": [
                {"user_id": p.user_id, "public_key": p.public_key.hex(), "flags": p.flags, "version": p.version}
                for p in c.participants
            ],
            "is_member": c.is_member,
            "emojis": c.emojis,
            "words": c.verification_words,
            "key_fingerprint": c.key_fingerprint,
        }

    def op_build_change_state(self, req):
        ps = [
            cc.Participant(p["user_id"], bytes.fromhex(p["public_key"]), p["flags"], p["version"])
            for p in req["participants"]
        ]
        block = self.call(req).build_change_state(ps, req["external_permissions"], self.rng)
        return {"block": block.hex()}

    def op_encrypt(self, req):
        packet = self.call(req).encrypt(req["channel"], bytes.fromhex(req["data"]), req.get("now", 0), self.rng)
        return {"packet": packet.hex()}

    def op_decrypt(self, req):
        data = self.call(req).decrypt(req["user_id"], bytes.fromhex(req["packet"]), req.get("now", 0))
        return {"data": data.hex()}

    def op_encrypt_message(self, req):
        return {"message": self.call(req).encrypt_message(req["text"], req.get("now", 0), self.rng).hex()}

    def op_decrypt_message(self, req):
        return {"text": self.call(req).decrypt_message(req["user_id"], bytes.fromhex(req["message"]), req.get("now", 0))}

    # ---- frame operations (the module's frame layer)

    def op_frame_layout(self, req):
        data, prefix = cc.frame_plaintext(req["codec"], bytes.fromhex(req["frame"]), req["level"], req["speech"])
        return {"data": data.hex(), "prefix": prefix}

    def op_frame_validate(self, req):
        return {"valid": cc.frame_is_valid_encrypted(req["codec"], bytes.fromhex(req["packet"]), req["prefix"])}

    def op_frame_receive(self, req):
        decrypted = bytes.fromhex(req["decrypted"])
        if not decrypted:  # the decryption failed: the frame is dropped
            return {"frame": None, "level": None, "speech": None}
        frame, level, speech = cc.frame_strip_received(req["codec"], decrypted)
        return {"frame": frame.hex(), "level": level, "speech": speech}

    def op_level_to_byte(self, req):
        return {"byte": cc.audio_level_to_byte(cc.audio_level_from_linear(req["linear"]), req["speech"])}

    def op_level_from_byte(self, req):
        return {"linear": cc.audio_level_to_linear(req["byte"])}

    def op_encrypt_frame(self, req):
        packet = self.call(req).encrypt_frame(
            req["channel"], req["codec"], bytes.fromhex(req["frame"]), req.get("now", 0), self.rng,
            req["level"], req["speech"],
        )
        return {"packet": packet.hex()}

    def op_decrypt_frame(self, req):
        frame, level, speech = self.call(req).decrypt_frame(
            req["user_id"], req["codec"], bytes.fromhex(req["packet"]), req.get("now", 0)
        )
        return {"frame": frame.hex(), "level": level, "speech": speech}


def main():
    peer = Peer()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        rid, op = req.get("id"), req.get("op")
        if op == "hello":
            answer = {"id": rid, "ok": {
                "version": 1, "implementation": "confchain-python " + cc.__version__, "ops": OPS,
                "errors": True, "keys": True, "rng": False,
            }}
        elif op in OPS:
            try:
                answer = {"id": rid, "ok": getattr(peer, "op_" + op)(req)}
            except cc.ConfchainError as e:
                code = e.name if e.code != 100 else ""
                answer = {"id": rid, "error": {"code": code, "name": e.name, "message": e.message}}
            except (KeyError, ValueError, TypeError) as e:
                answer = {"id": rid, "error": {"code": "", "name": "INVALID_INPUT", "message": str(e)}}
        else:
            answer = {"id": rid, "unsupported": True}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
