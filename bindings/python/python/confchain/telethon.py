"""Carries a :class:`confchain.Session` over Telethon (tested with Telethon 1.45, layer 229).

``pip install "confchain[telethon]"``. The session decides what to send; this adapter turns each
:class:`confchain.Request` into Telethon's own function object (filling ``call``, ``join_as``,
``params``, ``random_id``, ``source`` and the flags), sends it with the client, and turns the result
or the error back into what the session takes: Telethon's ``Updates`` into :class:`confchain.Update`
values, ``FloodWaitError(30)`` into ``"FLOOD_WAIT_30"``, a lost connection into ``"TIMEOUT"``.
Pushed updates about the call go to the session too; ``updateGroupCallConnection`` (the media
transport's parameters) goes to your ``on_connection`` callback.

What stays yours: the MTProto connection (a logged-in ``TelegramClient``), the media stack and the
``params`` JSON it produces for the join, showing the emojis, and when to rejoin.

Telethon sleeps through flood waits shorter than ``client.flood_sleep_threshold`` (60 s by default)
and retries by itself; set it to 0 to let the session see every ``FLOOD_WAIT_X`` and schedule its
own retries.
"""

import asyncio
import os
import time
from typing import Any, Callable, List, Optional, Tuple

from telethon import errors, events, functions, types

import confchain

__all__ = ["TelethonConference", "error_string", "to_confchain_updates"]

#: Errors of the transport (no answer from Telegram): the session retries these.
TRANSPORT_ERRORS = (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)


def _reverse_error_names():
    names = {}
    for name, cls in errors.rpcerrorlist.rpc_errors_dict.items():
        names.setdefault(cls, name)
    return names


_ERROR_NAMES = _reverse_error_names()


def error_string(exc: BaseException) -> str:
    """The API error string the session takes, for an exception raised by ``await client(...)``."""
    if isinstance(exc, errors.FloodPremiumWaitError):
        return "FLOOD_PREMIUM_WAIT_%d" % exc.seconds
    if isinstance(exc, errors.FloodWaitError):
        return "FLOOD_WAIT_%d" % exc.seconds
    if isinstance(exc, errors.TimeoutError):  # rpc_error -503 "Timeout"
        return "TIMEOUT"
    if isinstance(exc, errors.RPCError):
        name = _ERROR_NAMES.get(type(exc))
        return name if name is not None else str(exc.message)
    if isinstance(exc, TRANSPORT_ERRORS):
        return "TIMEOUT"
    raise exc


def _int256(key: bytes) -> int:
    return int.from_bytes(key, "little", signed=True)


def _call_id(call: Any) -> Optional[Tuple[int, int]]:
    if isinstance(call, types.InputGroupCall):
        return (call.id, call.access_hash)
    return None


def to_confchain_updates(
    items: List[Any], call: Optional[Tuple[int, int]], learn: bool = False
) -> Tuple[List[confchain.Update], List[Any], Optional[Tuple[int, int]]]:
    """Sorts Telethon update objects: those about the call ``(id, access_hash)`` as
    :class:`confchain.Update` values, the rest (``updateGroupCallConnection`` and anything else) as
    they are, and the call's identity. With ``call`` None (not known yet) and ``learn`` (the
    result of our own request by link or of a create, which is about our call), the first call
    named is taken as ours; pushes (``learn`` False) about an unknown call are left out."""
    mapped: List[confchain.Update] = []
    other: List[Any] = []
    for u in items:
        if call is None and learn:
            if isinstance(u, types.UpdateGroupCall):
                call = (u.call.id, u.call.access_hash)
            else:
                call = _call_id(getattr(u, "call", None))
        if isinstance(u, types.UpdateGroupCall):
            gc = u.call
            ident = (gc.id, gc.access_hash)
            if ident != call:
                other.append(u)
                continue
            discarded = isinstance(gc, types.GroupCallDiscarded)
            link = None if discarded else gc.invite_link
            mapped.append(confchain.update_group_call(gc.id, gc.access_hash, discarded, link))
            continue
        about = _call_id(getattr(u, "call", None))
        if about is None or about != call:
            other.append(u)
        elif isinstance(u, types.UpdateGroupCallChainBlocks):
            mapped.append(confchain.Update.chain_blocks(u.sub_chain_id, list(u.blocks), u.next_offset))
        elif isinstance(u, types.UpdateGroupCallEncryptedMessage):
            if isinstance(u.from_id, types.PeerUser):
                mapped.append(confchain.Update.encrypted_message(u.from_id.user_id, u.encrypted_message))
        elif isinstance(u, types.UpdateGroupCallParticipants):
            pairs = [(p.peer.user_id, bool(p.left)) for p in u.participants if isinstance(p.peer, types.PeerUser)]
            mapped.append(confchain.update_participants(pairs))
        else:
            other.append(u)
    return mapped, other, call


def _items(result: Any) -> List[Any]:
    """The updates inside a result (``updates``, ``updatesCombined``, ``updateShort``, one update)."""
    if isinstance(result, (types.Updates, types.UpdatesCombined)):
        return list(result.updates)
    if isinstance(result, types.UpdateShort):
        return [result.update]
    if type(result).__name__.startswith("Update") and not isinstance(result, types.UpdatesTooLong):
        return [result]
    return []


class TelethonConference:
    """One conference call carried by a Telethon client.

    ``params`` is the media stack's join JSON (a string, or a callable returning it, called at each
    join). ``call`` is a ``types.InputGroupCall`` (or ``InputGroupCallSlug``/``InputGroupCallInviteMessage``
    for a join by link or invitation: the real identity is learned from the result and used after).
    ``on_connection(params_json, presentation)`` receives ``updateGroupCallConnection``;
    ``on_other(update)`` gets updates that are not the session's.
    """

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
    ) -> None:
        self.client = client
        self.session = session
        self.rng = rng
        self.params = params
        self.call = call
        self.join_as = join_as if join_as is not None else types.InputPeerSelf()
        # One random_id per conference: a create retried after a lost answer is the same create.
        self.random_id = random_id if random_id is not None else int.from_bytes(os.urandom(4), "little", signed=True)
        self.source = source
        self.invite_hash = invite_hash
        self.muted = muted
        self.video_stopped = video_stopped
        self.on_connection = on_connection
        self.on_other = on_other
        self.clock = clock
        self._wake = asyncio.Event()
        self._handler = None

    # ---- pure mappings ----

    def _params(self) -> types.DataJSON:
        data = self.params() if callable(self.params) else self.params
        return types.DataJSON(data=data)

    def to_function(self, request: confchain.Request) -> Any:
        """Telethon's function object for a session request."""
        phone = functions.phone
        kind = request.kind
        if kind == "create_conference":
            random_id = getattr(request, "random_id", None)
            random_id = self.random_id if random_id is None else random_id
            if request.block is None:
                return phone.CreateConferenceCallRequest(
                    random_id=random_id, muted=self.muted or None, video_stopped=self.video_stopped or None
                )
            return phone.CreateConferenceCallRequest(
                random_id=random_id,
                muted=self.muted or None,
                video_stopped=self.video_stopped or None,
                join=True,
                public_key=_int256(request.public_key),
                block=request.block,
                params=self._params(),
            )
        if self.call is None:
            raise ValueError("the call is not known yet: create it or pass call=")
        if kind == "get_chain_blocks":
            return phone.GetGroupCallChainBlocksRequest(self.call, request.sub_chain, request.offset, request.limit)
        if kind == "join":
            return phone.JoinGroupCallRequest(
                call=self.call,
                join_as=self.join_as,
                params=self._params(),
                muted=self.muted or None,
                video_stopped=self.video_stopped or None,
                invite_hash=self.invite_hash,
                public_key=_int256(request.public_key),
                block=request.block,
            )
        if kind == "delete_participants":
            return phone.DeleteConferenceCallParticipantsRequest(
                call=self.call,
                ids=list(request.user_ids),
                block=request.block,
                only_left=None if request.kick else True,
                kick=True if request.kick else None,
            )
        if kind == "send_broadcast":
            return phone.SendConferenceCallBroadcastRequest(self.call, request.block)
        if kind == "send_encrypted_message":
            return phone.SendGroupCallEncryptedMessageRequest(self.call, request.encrypted_message)
        if kind == "leave":
            return phone.LeaveGroupCallRequest(self.call, self.source)
        raise ValueError("unknown request kind %r" % kind)

    def _take(self, items: List[Any], result: bool = False) -> List[confchain.Update]:
        mapped, other, call = to_confchain_updates(items, _call_id(self.call), learn=result)
        if call is not None and _call_id(self.call) != call:
            # A create or a join by link learned the call's identity: name it so from now on.
            self.call = types.InputGroupCall(id=call[0], access_hash=call[1])
        for u in other:
            if isinstance(u, types.UpdateGroupCallConnection):
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
            result = await self.client(function)
        except Exception as exc:  # noqa: BLE001 - mapped or re-raised by error_string
            self.session.handle_response(request.id, self.clock(), self.rng, error=error_string(exc))
            return
        updates = self._take(_items(result), result=True)
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
        """Feeds one pushed Telethon update; whether it was about this call."""
        mapped = self._take([update])
        for u in mapped:
            self.session.handle_update(u, self.clock(), self.rng)
        self._wake.set()
        return bool(mapped)

    def attach(self) -> None:
        """Routes the client's pushed updates (``events.Raw``) to :meth:`handle_update`."""

        async def raw(update):
            self.handle_update(update)

        self._handler = raw
        self.client.add_event_handler(raw, events.Raw)

    def detach(self) -> None:
        if self._handler is not None:
            self.client.remove_event_handler(self._handler, events.Raw)
            self._handler = None

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
