"""confchain: the sans-IO core of Telegram's end-to-end encrypted conference calls.

Bytes in, bytes out. Time is passed as milliseconds of your monotonic clock (`now_ms`), and
randomness comes from an `Rng` you seed (`Rng.from_os()` seeds it from `os.urandom`).
"""

import os

from ._confchain import (  # noqa: F401
    CHANNEL_MAIN,
    CHANNEL_SCREENCAST,
    FRAME_MAX_ATTEMPTS,
    PAYLOAD_TYPE_H264,
    PAYLOAD_TYPE_OPUS,
    PAYLOAD_TYPE_VP8,
    PAYLOAD_TYPE_VP9,
    audio_level_from_byte,
    audio_level_from_linear,
    audio_level_from_peak,
    audio_level_to_byte,
    audio_level_to_linear,
    codec_from_payload_type,
    frame_is_valid_encrypted,
    frame_plaintext,
    frame_strip_received,
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
    Session,
    SessionEvent,
    SourceTable,
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

# The server model and its TL front are test doubles: only in a module built with the `testkit`
# feature (bindings/python/test.sh builds it so; the wheel users install has neither).
try:
    from ._confchain import Server, TlFront  # noqa: F401
except ImportError:
    pass

__all__ = [
    "CHANNEL_MAIN",
    "CHANNEL_SCREENCAST",
    "FRAME_MAX_ATTEMPTS",
    "PAYLOAD_TYPE_H264",
    "PAYLOAD_TYPE_OPUS",
    "PAYLOAD_TYPE_VP8",
    "PAYLOAD_TYPE_VP9",
    "audio_level_from_byte",
    "audio_level_from_linear",
    "audio_level_from_peak",
    "audio_level_to_byte",
    "audio_level_to_linear",
    "codec_from_payload_type",
    "frame_is_valid_encrypted",
    "frame_plaintext",
    "frame_strip_received",
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
    "Session",
    "SessionEvent",
    "SourceTable",
    "Update",
    "create_self_add_block",
    "create_zero_block",
    "to_server_form",
    "update_group_call",
    "update_participants",
]
if "Server" in globals():
    __all__ += ["Server", "TlFront"]
