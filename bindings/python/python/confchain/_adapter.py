"""What the Python MTProto adapters share: Telethon and Pyrogram (Kurigram) generate the same
names for the layer's types and the same keyword arguments for its functions, so one mapping
serves both; each adapter names its library's classes, how it invokes, and how it reads errors.
"""

import asyncio
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import confchain

#: Errors of the transport (no answer from Telegram): the session retries these.
TRANSPORT_ERRORS = (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)

# (session request kind) -> layer function name
FUNCTIONS = {
    "create_conference": "CreateConferenceCall",
    "get_chain_blocks": "GetGroupCallChainBlocks",
    "join": "JoinGroupCall",
    "delete_participants": "DeleteConferenceCallParticipants",
    "send_broadcast": "SendConferenceCallBroadcast",
    "send_encrypted_message": "SendGroupCallEncryptedMessage",
    "leave": "LeaveGroupCall",
    "get_group_participants": "GetGroupParticipants",
}


def int256(key: bytes) -> int:
    """An ``int256`` argument as both libraries take it (little-endian, signed)."""
    return int.from_bytes(key, "little", signed=True)


def _name(obj: Any) -> str:
    return type(obj).__name__


def app_session_config(app_config: Any) -> Dict[str, int]:
    """The :class:`confchain.Session` keywords a ``help.appConfig`` sets (either library's object):
    ``call_size_limit`` from its ``conference_call_size_limit``, brought into the session's range
    (2 to 10,000); nothing when the key is missing or not a number (the default, 200, stays)."""
    config = getattr(app_config, "config", None)
    if _name(config) != "JsonObject":
        return {}
    for item in config.value:
        if item.key == "conference_call_size_limit" and _name(item.value) == "JsonNumber":
            value = item.value.value
            if isinstance(value, (int, float)) and value == value:  # not NaN
                return {"call_size_limit": int(min(max(value, 2), 10_000))}
    return {}


def call_id(call: Any) -> Optional[Tuple[int, int]]:
    """``(id, access_hash)`` of an ``inputGroupCall``; None for a slug or an invite message."""
    if _name(call) == "InputGroupCall":
        return (call.id, call.access_hash)
    return None


def _video(v: Any) -> Optional[Tuple[List[List[int]], Optional[int]]]:
    """A ``groupCallParticipantVideo`` as :meth:`confchain.SourceTable.apply` takes it."""
    if v is None:
        return None
    return ([list(g.sources) for g in v.source_groups], getattr(v, "audio_source", None))


def participant_sources(p: Any) -> Tuple[int, bool, int, Any, Any]:
    """A user's ``groupCallParticipant`` (the library's own object) as a record of
    :meth:`confchain.SourceTable.apply`: ``(user_id, left, source, video, presentation)``."""
    return (p.peer.user_id, bool(p.left), p.source, _video(p.video), _video(p.presentation))


def participants_update(
    participants: List[Any], version: Optional[int], sources: Optional[confchain.SourceTable] = None
) -> confchain.Update:
    """The users among the library's ``groupCallParticipant`` objects (of an
    ``updateGroupCallParticipants``, or of the ``phone.groupParticipants`` a lookup returns) as
    the session's update: full records with ``date`` and ``version`` (the session keeps their
    sources in :meth:`confchain.Session.source_map` and tells participations apart by source and
    date), applied to ``sources`` too when given."""
    users = [p for p in participants if _name(p.peer) == "PeerUser"]
    records = [participant_sources(p) for p in users]
    if sources is not None:
        sources.apply(records)
    return confchain.update_participants(
        [r + (getattr(p, "date", 0) or 0, version or 0) for r, p in zip(records, users)]
    )


def to_confchain_updates(
    items: List[Any],
    call: Optional[Tuple[int, int]],
    learn: bool = False,
    sources: Optional[confchain.SourceTable] = None,
) -> Tuple[List[confchain.Update], List[Any], Optional[Tuple[int, int]]]:
    """Sorts update objects: those about the call ``(id, access_hash)`` as
    :class:`confchain.Update` values, the rest (``updateGroupCallConnection`` and anything else) as
    they are, and the call's identity. With ``call`` None (not known yet) and ``learn`` (the
    result of our own create, or of a request that named the call by link), the first call named
    is taken as ours; pushes (``learn`` False) about an unknown call are left out. With
    ``sources`` (a :class:`confchain.SourceTable`), the participants of the call's
    ``updateGroupCallParticipants`` are applied to it with their ``source``, ``video`` and
    ``presentation``; the session's update carries the same records with ``date`` and the
    update's ``version`` (its own map, :meth:`confchain.Session.source_map`, is fed from them)."""
    mapped: List[confchain.Update] = []
    other: List[Any] = []
    for u in items:
        kind = _name(u)
        if call is None and learn:
            if kind == "UpdateGroupCall":
                call = (u.call.id, u.call.access_hash)
            else:
                call = call_id(getattr(u, "call", None))
        if kind == "UpdateGroupCall":
            gc = u.call
            if (gc.id, gc.access_hash) != call:
                other.append(u)
                continue
            discarded = _name(gc) == "GroupCallDiscarded"
            link = None if discarded else gc.invite_link
            mapped.append(confchain.update_group_call(gc.id, gc.access_hash, discarded, link))
            continue
        about = call_id(getattr(u, "call", None))
        if about is None or about != call:
            other.append(u)
        elif kind == "UpdateGroupCallChainBlocks" and u.sub_chain_id not in (0, 1):
            other.append(u)  # another sub-chain: none of the session's
        elif kind == "UpdateGroupCallChainBlocks":
            mapped.append(confchain.Update.chain_blocks(u.sub_chain_id, list(u.blocks), u.next_offset))
        elif kind == "UpdateGroupCallEncryptedMessage":
            if _name(u.from_id) == "PeerUser":
                mapped.append(confchain.Update.encrypted_message(u.from_id.user_id, u.encrypted_message))
        elif kind == "UpdateGroupCallParticipants":
            mapped.append(participants_update(u.participants, getattr(u, "version", 0), sources))
        else:
            other.append(u)
    return mapped, other, call


def items_of(result: Any) -> List[Any]:
    """The updates inside a result (``updates``, ``updatesCombined``, ``updateShort``, one update)."""
    kind = _name(result)
    if kind in ("Updates", "UpdatesCombined"):
        return list(result.updates)
    if kind == "UpdateShort":
        return [result.update]
    if kind.startswith("Update") and kind != "UpdatesTooLong":
        return [result]
    return []


class Conference:
    """One conference call carried by an MTProto client (see the subclasses).

    ``params`` is the media stack's join JSON (a string, or a callable returning it, called at each
    join). ``call`` is an ``InputGroupCall`` object of the library (or ``InputGroupCallSlug`` /
    ``InputGroupCallInviteMessage`` for a join by link or invitation: the real identity is learned
    from the result and used after). ``on_connection(params_json, presentation)`` receives
    ``updateGroupCallConnection``; ``on_other(update)`` gets updates that are not the session's.
    ``sources`` (a :class:`confchain.SourceTable`) is fed every participant update about the call
    with the library's own ``source``, ``video`` and ``presentation``: media code finds a frame's
    sender from its RTP SSRC (``Call.decrypt_frame_from_source``).
    """

    #: The library's ``types`` namespace and function classes by layer name (set by subclasses).
    types: Any = None

    def function_class(self, name: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    async def invoke(self, function: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def error_string(self, exc: BaseException) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __init__(
        self,
        client: Any,
        session: confchain.Session,
        rng: confchain.Rng,
        *,
        params: Any = "{}",
        call: Any = None,
        join_as: Any = None,
        random_id: Optional[int] = None,
        source: int = 0,
        invite_hash: Optional[str] = None,
        muted: bool = False,
        video_stopped: bool = False,
        on_connection: Optional[Callable[[str, bool], None]] = None,
        on_other: Optional[Callable[[Any], None]] = None,
        clock: Callable[[], int] = lambda: int(time.monotonic() * 1000),
        sources: Optional[confchain.SourceTable] = None,
    ) -> None:
        self.client = client
        self.session = session
        self.rng = rng
        self.params = params
        self.call = call
        self.join_as = join_as if join_as is not None else self.types.InputPeerSelf()
        # One random_id per conference: a create retried after a lost answer is the same create.
        self.random_id = random_id if random_id is not None else int.from_bytes(os.urandom(4), "little", signed=True)
        self.source = source
        self.invite_hash = invite_hash
        self.muted = muted
        self.video_stopped = video_stopped
        self.on_connection = on_connection
        self.on_other = on_other
        self.clock = clock
        #: Who sends on each SSRC: every participant update about the call is applied to it.
        self.sources = sources
        self._wake = asyncio.Event()

    # ---- pure mappings ----

    def _params(self) -> Any:
        data = self.params() if callable(self.params) else self.params
        return self.types.DataJSON(data=data)

    def to_function(self, request: confchain.Request) -> Any:
        """The library's function object for a session request."""
        kind = request.kind
        if kind not in FUNCTIONS:
            raise ValueError("unknown request kind %r" % kind)
        fn = self.function_class(FUNCTIONS[kind])
        flags = {"muted": self.muted or None, "video_stopped": self.video_stopped or None}
        if kind == "create_conference":
            random_id = getattr(request, "random_id", None)
            random_id = self.random_id if random_id is None else random_id
            if request.block is None:
                return fn(random_id=random_id, **flags)
            # join, public_key, block and params share flags.3: all four are set together.
            return fn(
                random_id=random_id,
                join=True,
                public_key=int256(request.public_key),
                block=request.block,
                params=self._params(),
                **flags,
            )
        if self.call is None:
            raise ValueError("the call is not known yet: create it or pass call=")
        call = self.call
        if kind == "get_chain_blocks":
            return fn(call=call, sub_chain_id=request.sub_chain, offset=request.offset, limit=request.limit)
        if kind == "join":
            return fn(
                call=call,
                join_as=self.join_as,
                params=self._params(),
                invite_hash=self.invite_hash,
                public_key=int256(request.public_key),
                block=request.block,
                **flags,
            )
        if kind == "delete_participants":
            kick = bool(request.kick)
            return fn(
                call=call,
                ids=list(request.user_ids),
                block=request.block,
                only_left=None if kick else True,
                kick=True if kick else None,
            )
        if kind == "send_broadcast":
            return fn(call=call, block=request.block)
        if kind == "send_encrypted_message":
            return fn(call=call, encrypted_message=request.encrypted_message)
        if kind == "get_group_participants":
            # Who sends on these SSRCs (the session looks up what its map missed).
            # SSRCs above 2^31 go as the negative TL ints they are on the wire.
            ssrcs = [s - (1 << 32) if s >= 1 << 31 else s for s in request.sources]
            return fn(call=call, ids=[], sources=ssrcs, offset="", limit=len(ssrcs))
        return fn(call=call, source=self.source)  # leave

    def take(self, items: List[Any], result: bool = False) -> List[confchain.Update]:
        """Maps update objects to the session's, routing the others to the callbacks."""
        mapped, other, call = to_confchain_updates(items, call_id(self.call), learn=result, sources=self.sources)
        if call is not None and call_id(self.call) != call:
            # A create or a join by link learned the call's identity: name it so from now on.
            self.call = self.types.InputGroupCall(id=call[0], access_hash=call[1])
        for u in other:
            if _name(u) == "UpdateGroupCallConnection":
                if self.on_connection is not None:
                    self.on_connection(u.params.data, bool(u.presentation))
            elif self.on_other is not None:
                self.on_other(u)
        return mapped

    # ---- driving ----

    async def send(self, request: confchain.Request) -> None:
        """Sends one request and gives the session its response."""
        function = self.to_function(request)
        try:
            result = await self.invoke(function)
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised by error_string
            self.session.handle_response(request.id, self.clock(), self.rng, error=self.error_string(exc))
            return
        if request.kind == "get_group_participants":  # phone.groupParticipants
            updates = [participants_update(result.participants, getattr(result, "version", 0), self.sources)]
        else:
            updates = self.take(items_of(result), result=True)
        self.session.handle_response(request.id, self.clock(), self.rng, updates=updates)

    async def flush(self) -> int:
        """Sends every request the session has (one at a time, in order); how many were sent."""
        n = 0
        while True:
            request = self.session.poll_request()
            if request is None:
                return n
            await self.send(request)
            n += 1

    def handle_update(self, update: Any) -> bool:
        """Feeds one pushed update object; whether it was about this call."""
        mapped = self.take([update])
        for u in mapped:
            self.session.handle_update(u, self.clock(), self.rng)
        self._wake.set()
        return bool(mapped)

    async def run(self, until: Callable[[], bool]) -> None:
        """Sends requests, fires timers and waits for updates until ``until()`` is true."""
        while not until():
            await self.flush()
            self.session.handle_timeout(self.clock(), self.rng)
            await self.flush()
            deadline = self.session.poll_timeout()
            wait = 1.0 if deadline is None else max(0.0, (deadline - self.clock()) / 1000)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))
            except asyncio.TimeoutError:
                pass
