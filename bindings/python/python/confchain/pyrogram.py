"""Carries a :class:`confchain.Session` over Pyrogram as Kurigram ships it (tested with Kurigram
2.2.26, layer 229: the maintained fork that py-tgcalls users run).

``pip install "confchain[pyrogram]"``. The session decides what to send; this adapter turns each
:class:`confchain.Request` into Pyrogram's raw function object (``raw.functions.phone.*``, filling
``call``, ``join_as``, ``params``, ``random_id``, ``source`` and the flags), sends it with
``client.invoke``, and turns the result or the error back into what the session takes:
``FloodWait`` (value 30) into ``"FLOOD_WAIT_30"``, an error Pyrogram does not know
(``BadRequest`` "[400 CONF_WRITE_CHAIN_INVALID]") into its name, a lost connection into
``"TIMEOUT"``. :meth:`PyrogramConference.attach` routes pushed raw updates to the session and
``updateGroupCallConnection`` to your ``on_connection`` callback.

What stays yours: the MTProto connection (a started ``pyrogram.Client``), the media stack and
the ``params`` JSON it produces for the join, showing the emojis, and when to rejoin.

Pyrogram sleeps through flood waits shorter than ``Client(sleep_threshold=...)`` (10 s by
default) and retries by itself; pass ``sleep_threshold=0`` to let the session see them all. It
also appends every error it has no class for to ``unknown_errors.txt`` in the working directory
(``CONF_WRITE_CHAIN_INVALID`` is one, and chain races are routine).
"""

import re
from typing import Any, Dict

from pyrogram import errors, raw
from pyrogram.handlers import RawUpdateHandler

from ._adapter import TRANSPORT_ERRORS, Conference, app_session_config, to_confchain_updates

__all__ = ["PyrogramConference", "error_string", "session_config", "to_confchain_updates"]

_UNKNOWN = re.compile(r"^\[-?\d+ (.+)\]$")
_PARAMETER = re.compile(r"_X(?=_|$)")


async def session_config(client: Any) -> Dict[str, int]:
    """The :class:`confchain.Session` keywords Telegram's app config sets, from
    ``help.getAppConfig``: ``confchain.Session(me.id, **await session_config(client))`` (the call
    size limit, ``conference_call_size_limit``, where the server gives one)."""
    return app_session_config(await client.invoke(raw.functions.help.GetAppConfig(hash=0)))


def error_string(exc: BaseException) -> str:
    """The API error string the session takes, for an exception raised by ``client.invoke``.
    Anything that is neither an RPC error nor a transport failure is re-raised (a bug stays one)."""
    if isinstance(exc, errors.RPCError):
        ident, value = exc.ID, exc.value
        if ident is None:
            # A class for the code only: the value is "[400 CONF_WRITE_CHAIN_INVALID]".
            m = _UNKNOWN.match(str(value)) if value is not None else None
            return m.group(1) if m else exc.NAME
        if ident == "Timeout" or exc.CODE == 503:  # rpc_error -503 ("Timeout", or any other text)
            return "TIMEOUT"
        if value is not None and _PARAMETER.search(ident):
            return _PARAMETER.sub("_%s" % value, ident, count=1)
        return ident
    if isinstance(exc, TRANSPORT_ERRORS):
        return "TIMEOUT"
    raise exc


class PyrogramConference(Conference):
    """One conference call carried by a Pyrogram (Kurigram) ``Client`` (see :class:`Conference`
    for the arguments)."""

    types = raw.types

    def function_class(self, name: str) -> Any:
        return getattr(raw.functions.phone, name)

    async def invoke(self, function: Any) -> Any:
        return await self.client.invoke(function)

    def error_string(self, exc: BaseException) -> str:
        return error_string(exc)

    def attach(self, group: int = 0) -> None:
        """Routes the client's pushed raw updates to :meth:`handle_update`."""

        async def raw_update(client, update, users, chats):
            self.handle_update(update)

        self._handler = self.client.add_handler(RawUpdateHandler(raw_update), group)

    def detach(self) -> None:
        handler = getattr(self, "_handler", None)
        if handler is not None:
            self.client.remove_handler(*handler)
            self._handler = None
