#!/usr/bin/env python3
"""Conformance peer over ntgcalls (PyPI `ntgcalls`, the engine of py-tgcalls).

Speaks conformance/PROTOCOL.md (version 1) on stdin/stdout. ntgcalls exposes its E2E session to
Python only through a conference call object: `create_p2p_call` + `init_conference(chat, user_id,
last_block)` builds the zero block (no last block) or the self-add block and returns the key it
generated; `apply_blocks(chat, sub_chain, next_offset, blocks, from_short_poll)` feeds blocks
(sub-chain 0) and broadcasts (sub-chain 1); `on_outbound_block` hands out the broadcasts to send;
`get_emojis_fingerprint` reads the emojis. It reports no errors (a failed block silently stops the
session), takes no private key and no randomness, and does not expose packets: `errors`, `keys` and
`rng` are false and the packet operations are not offered.
"""
import asyncio
import json
import sys

import ntgcalls

OPS = ["create", "join", "apply_block", "receive_broadcast", "pull_outbound", "state"]


class Peer:
    def __init__(self):
        self.ntg = ntgcalls.NTgCalls()
        self.chats = {}
        self.outbound = {}
        self.ntg.on_outbound_block(lambda chat, block: self.outbound.setdefault(chat, []).append(bytes(block)))

    async def settle(self):
        # ntgcalls calls back from its own thread; let those callbacks reach the loop.
        await asyncio.sleep(0.05)

    async def start(self, req, last_block):
        chat = len(self.chats) + 1
        await self.ntg.create_p2p_call(chat)
        params = await self.ntg.init_conference(chat, req["user_id"], last_block)
        self.chats[req["member"]] = chat
        return {"public_key": bytes(params.public_key).hex(), "block": bytes(params.block).hex()}

    async def op_create(self, req):
        return await self.start(req, None)

    async def op_join(self, req):
        return await self.start(req, bytes.fromhex(req["last_block"]))

    async def op_apply_block(self, req):
        chat = self.chats[req["member"]]
        await self.ntg.apply_blocks(chat, 0, req["offset"], [bytes.fromhex(req["block"])], True)
        await self.settle()
        return {}

    async def op_receive_broadcast(self, req):
        chat = self.chats[req["member"]]
        await self.ntg.apply_blocks(chat, 1, req["offset"], [bytes.fromhex(req["broadcast"])], True)
        await self.settle()
        return {}

    async def op_pull_outbound(self, req):
        await self.settle()
        out = self.outbound.pop(self.chats[req["member"]], [])
        return {"broadcasts": [b.hex() for b in out]}

    async def op_state(self, req):
        emojis = await self.ntg.get_emojis_fingerprint(self.chats[req["member"]])
        return {"emojis": emojis or None}


async def main():
    peer = Peer()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        if not line.strip():
            continue
        req = json.loads(line)
        rid, op = req.get("id"), req.get("op")
        if op == "hello":
            answer = {"id": rid, "ok": {
                "version": 1, "implementation": "ntgcalls " + ntgcalls.__version__, "ops": OPS,
                "errors": False, "keys": False, "rng": False,
            }}
        elif op in OPS:
            try:
                answer = {"id": rid, "ok": await getattr(peer, "op_" + op)(req)}
            except Exception as e:  # ntgcalls raises its own exception types
                answer = {"id": rid, "error": {"code": "", "name": type(e).__name__, "message": str(e)}}
        else:
            answer = {"id": rid, "unsupported": True}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
