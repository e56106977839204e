"""Type stubs of confchain's Python module."""

from typing import Dict, List, Optional, Tuple, Union

class ConfchainError(Exception):
    code: int
    """The reference's numeric code (e.g. 204); 100 (UNKNOWN_ERROR) for every error without a code name."""
    name: str
    """The reference's code name (INVALID_BLOCK__HEIGHT_MISMATCH) or confchain's kind (REPLAY, PARSE, ...)."""
    message: str

class Rng:
    def __init__(self, seed: bytes) -> None: ...
    @staticmethod
    def from_os() -> "Rng": ...

class PrivateKey:
    @staticmethod
    def generate(rng: Rng) -> "PrivateKey": ...
    @staticmethod
    def from_bytes(seed: bytes) -> "PrivateKey": ...
    @property
    def public_key(self) -> bytes: ...

class Participant:
    user_id: int
    public_key: bytes
    flags: int
    version: int
    def __init__(self, user_id: int, public_key: bytes, flags: int = 3, version: int = 0) -> None: ...

class Block:
    @staticmethod
    def decode(data: bytes) -> "Block": ...
    @property
    def height(self) -> int: ...
    @property
    def hash(self) -> bytes: ...
    @property
    def prev_block_hash(self) -> bytes: ...
    @property
    def participants(self) -> List[Participant]: ...
    def encode(self) -> bytes: ...

def to_server_form(data: bytes) -> bytes: ...
def create_zero_block(key: PrivateKey, participants: List[Participant], external_permissions: int, rng: Rng) -> bytes: ...
def create_self_add_block(key: PrivateKey, last_block: bytes, me: Participant, rng: Rng) -> bytes: ...

__version__: str

class Event:
    kind: str
    """block_applied, tip_adopted (resync trusted the server's tip), removed, key_unavailable, epoch_expired or
    verification_done."""
    height: int
    error: Optional[str]

class P2PKey:
    @property
    def fingerprint(self) -> int: ...
    @property
    def emojis(self) -> List[str]: ...
    def key(self) -> bytes: ...

class P2PCaller:
    def __init__(self, rng: Rng, g: int = 3, p: Optional[bytes] = None) -> None: ...
    def g_a_hash(self) -> bytes: ...
    def g_a(self) -> bytes: ...
    def on_accepted(self, g_b: bytes) -> P2PKey: ...

class P2PCallee:
    def __init__(self, g_a_hash: bytes, rng: Rng, g: int = 3, p: Optional[bytes] = None) -> None: ...
    def g_b(self) -> bytes: ...
    def on_confirmed(self, g_a: bytes, key_fingerprint: int) -> P2PKey: ...

# ---- media frames as Telegram's apps (tgcalls) write them ----

Codec = Union[str, int]
"""A codec name ("opus", "vp8", "h264", or an SDP/MIME name such as "video/H264", any case; any other
name is the unknown path) or an RTP payload type as tgcalls maps it (111 Opus, 100 VP8, 104 H.264,
anything else the unknown path: VP9, AV1, ...)."""
ReceivedFrame = Tuple[bytes, Optional[int], Optional[bool]]
"""(frame, level, speech): level (0 loud ..= 127 silent) and speech are None unless an Opus frame
carried the level trailer."""
SentFrame = Tuple[bytes, int, int]
"""(packet, clear_prefix, attempts): attempts > 1 when H.264 ciphertexts with a start code were
discarded (each consumed a sequence number)."""

PAYLOAD_TYPE_OPUS: int  # 111
PAYLOAD_TYPE_VP8: int  # 100
PAYLOAD_TYPE_VP9: int  # 102 (an unknown codec to the frame layer)
PAYLOAD_TYPE_H264: int  # 104
CHANNEL_MAIN: int  # 0: camera and microphone (every app)
CHANNEL_SCREENCAST: int  # 1: screencast on iOS and TDLib clients (Desktop and Android use 0)
FRAME_MAX_ATTEMPTS: int  # 4: H.264 encryptions before a frame is dropped (FRAME__START_CODE)

def codec_from_payload_type(payload_type: int) -> str: ...
def frame_plaintext(codec: Codec, frame: bytes, level: int = 0, speech: bool = False) -> Tuple[bytes, int]:
    """What tgcalls passes to call_encrypt: (data, clear_prefix). No keys involved."""
def frame_is_valid_encrypted(codec: Codec, packet: bytes, clear_prefix: int) -> bool:
    """tgcalls' ValidateEncryptedFrame: False when an H.264 packet has a NAL start code after its prefix."""
def frame_strip_received(codec: Codec, plain: bytes) -> ReceivedFrame:
    """The receive side after a bare decryption: the Opus trailer stripped and its level."""
def audio_level_to_byte(level: int, speech: bool = False) -> int: ...
def audio_level_from_byte(byte: int) -> Tuple[int, bool]: ...
def audio_level_from_linear(linear: float) -> int: ...
def audio_level_from_peak(peak: int) -> int: ...
def audio_level_to_linear(level: int) -> float: ...

class MediaEncryptor:
    def encrypt(self, channel: int, frame: bytes, now_ms: int, clear_prefix_len: int = 0) -> bytes: ...
    def encrypt_frame(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, level: int = 0, speech: bool = False
    ) -> bytes: ...
    def encrypt_frame_info(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, level: int = 0, speech: bool = False
    ) -> SentFrame: ...

# (ssrcs of each source group, audio_source) of a groupCallParticipantVideo.
VideoSourcesArg = Tuple[List[List[int]], Optional[int]]
# (frame, level, speech, user_id, kind): a decrypted frame and who sent it.
SourcedFrame = Tuple[bytes, Optional[int], Optional[bool], int, str]

# A participant record: (user_id, left, source, video, presentation, date, version), the fields
# after left optional from the end ((user_id, left) has no sources); None is the field's default.
ParticipantRecord = Union[
    Tuple[int, bool],
    Tuple[int, bool, int],
    Tuple[int, bool, int, Optional[VideoSourcesArg]],
    Tuple[int, bool, int, Optional[VideoSourcesArg], Optional[VideoSourcesArg]],
    Tuple[int, bool, int, Optional[VideoSourcesArg], Optional[VideoSourcesArg], int],
    Tuple[int, bool, int, Optional[VideoSourcesArg], Optional[VideoSourcesArg], int, int],
]

class SourceTable:
    """Who sends on each RTP SSRC of a call; kind is "audio", "video", "screencast" or
    "screencast_audio". Session.source_map() returns a read-only one (the session's own)."""
    def __init__(self, capacity: Optional[int] = None) -> None:
        """Holds up to capacity participants (default 1,000); past it the one updated least
        recently is forgotten."""
    def apply(self, participants: List[ParticipantRecord]) -> List[Tuple[int, int, str, bool, Optional[int]]]:
        """Participant records in order; returns the changes: (ssrc, user_id, kind, unmapped,
        previous_user_id). Raises ValueError on a session's map (the session applies its own)."""
    def get(self, ssrc: int) -> Optional[Tuple[int, str]]: ...
    def take_misses(self) -> List[int]:
        """SSRCs frames came on that the table did not map (to look up)."""
    def __len__(self) -> int: ...

class MediaDecryptor:
    def decrypt(self, user_id: int, packet: bytes, now_ms: int) -> bytes: ...
    def decrypt_frame(self, sender_user_id: int, codec: Codec, packet: bytes, now_ms: int) -> ReceivedFrame: ...
    def decrypt_frame_from_source(
        self, table: SourceTable, ssrc: int, codec: Codec, packet: bytes, now_ms: int
    ) -> SourcedFrame: ...

class Call:
    def __init__(self, user_id: int, key: PrivateKey, last_block: bytes, rng: Rng) -> None: ...
    def apply_block(self, block: bytes, now_ms: int, rng: Rng) -> None: ...
    def encrypt(self, channel: int, data: bytes, now_ms: int, rng: Rng, clear_prefix_len: int = 0) -> bytes: ...
    def decrypt(self, user_id: int, packet: bytes, now_ms: int) -> bytes: ...
    def encrypt_frame(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, rng: Rng, level: int = 0, speech: bool = False
    ) -> bytes:
        """A media frame as tgcalls encrypts it (codec prefix, H.264 start codes widened and
        re-encrypted, Opus level trailer). Raises ConfchainError FRAME__START_CODE when every
        H.264 attempt had a start code in the ciphertext (drop the frame)."""
    def encrypt_frame_info(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, rng: Rng, level: int = 0, speech: bool = False
    ) -> SentFrame: ...
    def decrypt_frame(self, sender_user_id: int, codec: Codec, packet: bytes, now_ms: int) -> ReceivedFrame:
        """A media frame from sender_user_id, the Opus trailer stripped. Raises ConfchainError
        FRAME__EMPTY for an empty plaintext (tgcalls drops it) and every error of decrypt."""
    def decrypt_frame_from_source(
        self, table: SourceTable, ssrc: int, codec: Codec, packet: bytes, now_ms: int
    ) -> SourcedFrame:
        """decrypt_frame for the member table maps ssrc to. Raises ConfchainError
        FRAME__UNKNOWN_SOURCE for an SSRC the table does not map (no key is tried)."""
    def check_block(self, block: bytes) -> None: ...
    def media_encryptor(self, rng: Rng) -> "MediaEncryptor": ...
    def media_decryptor(self) -> "MediaDecryptor": ...
    def resync(self, last_block: bytes, now_ms: int, rng: Rng) -> None: ...
    def poll_event(self) -> Optional["Event"]: ...
    def poll_timeout(self) -> Optional[int]: ...
    @property
    def has_current_key(self) -> bool: ...
    def verification_missing(self) -> List[int]: ...
    def encrypt_message(self, json: str, now_ms: int, rng: Rng) -> bytes: ...
    def decrypt_message(self, user_id: int, message: bytes, now_ms: int) -> str: ...
    def pull_outbound(self) -> List[bytes]: ...
    def receive_broadcast(self, message: bytes) -> None: ...
    def build_change_state(self, participants: List[Participant], external_permissions: int, rng: Rng) -> bytes: ...
    def build_remove(self, user_ids: List[int], rng: Rng) -> bytes: ...
    def build_rekey(self, rng: Rng) -> bytes: ...
    def handle_timeout(self, now_ms: int) -> None: ...
    @property
    def height(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def is_member(self) -> bool: ...
    @property
    def participants(self) -> List[Participant]: ...
    @property
    def active_epochs(self) -> List[int]: ...
    @property
    def emojis(self) -> Optional[List[str]]: ...
    @property
    def emoji_hash(self) -> Optional[bytes]: ...
    @property
    def verification_words(self) -> List[str]: ...
    @property
    def key_fingerprint(self) -> Optional[str]: ...

class Update:
    @staticmethod
    def chain_blocks(sub_chain: int, blocks: List[bytes], next_offset: int) -> "Update": ...
    @staticmethod
    def encrypted_message(from_id: int, data: bytes) -> "Update": ...

class Request:
    id: int
    kind: str
    """get_chain_blocks, create_conference, join, delete_participants, send_broadcast, send_encrypted_message, leave,
    get_group_participants."""
    sub_chain: Optional[int]
    offset: Optional[int]
    limit: Optional[int]
    user_ids: Optional[List[int]]
    kick: Optional[bool]
    sources: Optional[List[int]]
    """get_group_participants: the SSRCs to look up."""
    @property
    def public_key(self) -> Optional[bytes]: ...
    @property
    def block(self) -> Optional[bytes]: ...
    @property
    def encrypted_message(self) -> Optional[bytes]: ...

class SessionEvent:
    kind: str
    """created, joined, join_failed (text: a stable name, then the detail, e.g.
    "flood_wait: 100000 s" or "api: GROUPCALL_FORBIDDEN"), key_changed, participants_changed,
    verification_started, verification_done, message_received, removed, left, ended (the call
    ended: text is discarded, join_missing or call_invalid),
    chain_rejected (failed closed: the server's chain holds a block the rules refuse at height;
    the call and its media handles are closed, only a new join continues), call_identity
    (user_ids = [id, access_hash], text = invite link), video_blackout (the block at height
    blacks out H.264 video, text "now" or "ahead"; the session re-keys it away), unusable_key
    (from_id's entry has a key no one can use, seen at height; a member with the rights removes
    it), error (a refused
    push, a dropped message, a send given up)."""
    height: Optional[int]
    fingerprint: Optional[str]
    user_ids: Optional[List[int]]
    words: Optional[List[str]]
    emojis: Optional[List[str]]
    from_id: Optional[int]
    text: Optional[str]

class Session:
    def __init__(
        self,
        user_id: int,
        *,
        poll_interval_ms: int = ...,
        poll_limit: int = ...,
        max_attempts: int = ...,
        backoff_ms: int = ...,
        max_backoff_ms: int = ...,
        max_send_attempts: int = ...,
        max_message_bytes: int = ...,
        max_buffered_updates: int = ...,
        max_buffered_bytes: int = ...,
        max_remembered_messages: int = ...,
        request_timeout_ms: int = ...,
        max_flood_wait_s: int = ...,
        prune_left: bool = ...,
        max_prune_delay_ms: int = ...,
        end_video_blackouts: bool = ...,
        max_requests_per_second: int = ...,
        max_request_burst: int = ...,
        max_queued_messages: int = ...,
        call_size_limit: int = ...,
    ) -> None:
        """Keywords set the session's configuration (SPEC.md §15: ranges, defaults), e.g.
        call_size_limit from the app config's conference_call_size_limit; ConfchainError when a
        value is out of range."""
    @property
    def config(self) -> Dict[str, Union[int, bool]]:
        """Every configuration field by name."""
    def create(self, now_ms: int, rng: Rng, join: bool = True) -> None: ...
    def join(self, now_ms: int, rng: Rng) -> None: ...
    def leave(self, now_ms: int) -> None: ...
    def remove(self, user_ids: List[int], now_ms: int, rng: Rng, kick: bool = False) -> None: ...
    def send_message(self, json: str, now_ms: int, rng: Rng) -> None: ...
    def poll_request(self) -> Optional[Request]: ...
    def handle_response(
        self, id: int, now_ms: int, rng: Rng, updates: Optional[List[Update]] = None, error: Optional[str] = None
    ) -> None: ...
    def handle_update(self, update: Update, now_ms: int, rng: Rng) -> None: ...
    def handle_timeout(self, now_ms: int, rng: Rng) -> None: ...
    def poll_timeout(self) -> Optional[int]: ...
    def poll_event(self) -> Optional[SessionEvent]: ...
    def source_map(self) -> SourceTable:
        """The session's SSRC -> sender map, live and read-only: filled from participant updates,
        the join's answer and the session's lookups (get_group_participants requests for the
        SSRCs it missed), emptied when the session leaves the call."""
    @property
    def state(self) -> str:
        """idle, joining, joined, resyncing, removed, leaving, left, failed, chain_rejected, ended."""
    @property
    def user_id(self) -> int: ...
    @property
    def height(self) -> Optional[int]: ...
    @property
    def emojis(self) -> Optional[List[str]]: ...
    @property
    def key_fingerprint(self) -> Optional[str]: ...
    def encrypt(self, channel: int, data: bytes, now_ms: int, rng: Rng, clear_prefix_len: int = 0) -> bytes: ...
    def decrypt(self, user_id: int, packet: bytes, now_ms: int) -> bytes: ...
    def encrypt_frame(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, rng: Rng, level: int = 0, speech: bool = False
    ) -> bytes:
        """A media frame as tgcalls encrypts it (codec prefix, H.264 start codes widened and
        re-encrypted, Opus level trailer). Raises ConfchainError FRAME__START_CODE when every
        H.264 attempt had a start code in the ciphertext (drop the frame)."""
    def encrypt_frame_info(
        self, channel: int, codec: Codec, frame: bytes, now_ms: int, rng: Rng, level: int = 0, speech: bool = False
    ) -> SentFrame: ...
    def decrypt_frame(self, sender_user_id: int, codec: Codec, packet: bytes, now_ms: int) -> ReceivedFrame:
        """A media frame from sender_user_id, the Opus trailer stripped. Raises ConfchainError
        FRAME__EMPTY for an empty plaintext (tgcalls drops it) and every error of decrypt."""
    def decrypt_frame_from_source(
        self, table: SourceTable, ssrc: int, codec: Codec, packet: bytes, now_ms: int
    ) -> SourcedFrame:
        """decrypt_frame for the member table maps ssrc to. Raises ConfchainError
        FRAME__UNKNOWN_SOURCE for an SSRC the table does not map (no key is tried)."""

class Server:
    """The server model (a test double): only in a module built with the `testkit` feature."""

    def __init__(self, existing: bool = False) -> None: ...
    def handle(
        self, from_user_id: int, request: Request
    ) -> Tuple[Optional[List[Update]], Optional[str], List[Tuple[int, Update]]]: ...
    @property
    def height(self) -> int: ...

# ---- for the MTProto adapters (confchain.telethon, confchain.pyrogram) ----

def update_group_call(
    call_id: int, access_hash: int, discarded: bool = False, invite_link: Optional[str] = None
) -> Update: ...
def update_participants(participants: List[ParticipantRecord]) -> Update:
    """updateGroupCallParticipants (or a phone.groupParticipants answer): participant records as
    SourceTable.apply takes them; the session keeps their sources in its source_map()."""

class TlFront:
    """The server model's TL front: function bytes in, result bytes (Updates/Bool/rpc_error) out.
    Only in a module built with the `testkit` feature, as Server."""

    def __init__(self, call_id: int, access_hash: int) -> None: ...
    def handle(self, server: Server, from_user_id: int, function: bytes) -> Tuple[bytes, List[Tuple[int, bytes]]]: ...
    @property
    def invite_link(self) -> str: ...
    @property
    def connection_params(self) -> str: ...
