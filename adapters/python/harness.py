"""A network-free Telegram for MTProto-library tests: the server model behind its TL front.

Every request arrives as the bytes the library serialized; every answer and push leaves as
Telegram's TL bytes (``Updates``, ``Bool``, ``rpc_error``) for the library to parse.
"""

import confchain

CALL_ID, ACCESS_HASH = 0x1234_5678_9ABC, -0x0FED_CBA9_8765_4321


class Network:
    def __init__(self, existing=False):
        self.server = confchain.Server(existing)
        self.front = confchain.TlFront(CALL_ID, ACCESS_HASH)
        self.pending = []  # (to_user_id, Updates bytes), delivered by deliver()
        self.log = []  # (from_user_id, function bytes) of every request

    def answer(self, user_id, function):
        self.log.append((user_id, bytes(function)))
        result, pushes = self.front.handle(self.server, user_id, bytes(function))
        self.pending.extend(pushes)
        return bytes(result)

    def take_pending(self):
        out, self.pending = self.pending, []
        return out

    @property
    def slug(self):
        return self.front.invite_link.rsplit("/", 1)[-1]


class Clock:
    def __init__(self):
        self.ms = 1_000

    def __call__(self):
        return self.ms


async def settle(net, members, clock, rounds=60, step=300):
    """Sends, delivers and ticks for `rounds` rounds of `step` virtual milliseconds."""
    for _ in range(rounds):
        for m in members:
            await m.conf.flush()
        for to, data in net.take_pending():
            for m in members:
                if m.client.user_id == to:
                    await m.client.push(data)
        clock.ms += step
        for m in members:
            m.session.handle_timeout(clock.ms, m.rng)
            m.drain_events()
    for m in members:
        m.drain_events()
