"""confchain: the sans-IO core of Telegram's end-to-end encrypted conference calls.

Bytes in, bytes out. Time is passed as milliseconds of your monotonic clock (`now_ms`), and
randomness comes from an `Rng` you seed (`Rng.from_os()` seeds it from `os.urandom`).
"""

import os

from ._confchain import (  # noqa: F401
    Block,
    Call,
    ConfchainError,
    Event,
    MediaDecryptor,
    MediaEncryptor,
    P2PCallee,
    P2PCaller,
    P2PKey,
    __version__,
    Participant,
    PrivateKey,
    Request,
    Rng,
    Server,
    Session,
    SessionEvent,
    TlFront,
    Update,
    create_self_add_block,
    create_zero_block,
    to_server_form,
    update_group_call,
    update_participants,
)


def _rng_from_os(cls=Rng):
    return cls(os.urandom(32))


Rng.from_os = staticmethod(_rng_from_os)

__all__ = [
    "Block",
    "Call",
    "ConfchainError",
    "Event",
    "MediaDecryptor",
    "MediaEncryptor",
    "P2PCallee",
    "P2PCaller",
    "P2PKey",
    "Participant",
    "PrivateKey",
    "Request",
    "Rng",
    "Server",
    "Session",
    "SessionEvent",
    "TlFront",
    "Update",
    "create_self_add_block",
    "create_zero_block",
    "to_server_form",
    "update_group_call",
    "update_participants",
]
