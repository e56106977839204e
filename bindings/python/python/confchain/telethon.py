"""Carries a :class:`confchain.Session` over Telethon (tested with Telethon 1.45.0, layer 229).

``pip install "confchain[telethon]"``. The session decides what to send; this adapter turns each
:class:`confchain.Request` into Telethon's own function object (filling ``call``, ``join_as``,
``params``, ``random_id``, ``source`` and the flags), sends it with the client, and turns the result
or the error back into what the session takes: Telethon's ``Updates`` into :class:`confchain.Update`
values, ``FloodWaitError(30)`` into ``"FLOOD_WAIT_30"``, a lost connection into ``"TIMEOUT"``.
Pushed updates about the call go to the session too (:meth:`TelethonConference.attach` registers
an ``events.Raw`` handler); ``updateGroupCallConnection`` (the media transport's parameters) goes
to your ``on_connection`` callback.

What stays yours: the MTProto connection (a logged-in ``TelegramClient``), the media stack and the
``params`` JSON it produces for the join, showing the emojis, and when to rejoin.

Telethon sleeps through flood waits shorter than ``client.flood_sleep_threshold`` (60 s by default)
and retries by itself; set it to 0 to let the session see every ``FLOOD_WAIT_X`` and schedule its
own retries.
"""

from typing import Any, Dict

from telethon import errors, events, functions, types

from ._adapter import TRANSPORT_ERRORS, Conference, app_session_config, to_confchain_updates

__all__ = ["TelethonConference", "error_string", "session_config", "to_confchain_updates"]


async def session_config(client: Any) -> Dict[str, int]:
    """The :class:`confchain.Session` keywords Telegram's app config sets, from
    ``help.getAppConfig``: ``confchain.Session(me.id, **await session_config(client))`` (the call
    size limit, ``conference_call_size_limit``, where the server gives one)."""
    return app_session_config(await client(functions.help.GetAppConfigRequest(hash=0)))


def _reverse_error_names():
    names = {}
    for name, cls in errors.rpcerrorlist.rpc_errors_dict.items():
        names.setdefault(cls, name)
    return names


_ERROR_NAMES = _reverse_error_names()


def error_string(exc: BaseException) -> str:
    """The API error string the session takes, for an exception raised by ``await client(...)``.
    Anything that is neither an RPC error nor a transport failure is re-raised (a bug stays one)."""
    if isinstance(exc, errors.FloodPremiumWaitError):
        return "FLOOD_PREMIUM_WAIT_%d" % exc.seconds
    if isinstance(exc, errors.FloodWaitError):
        return "FLOOD_WAIT_%d" % exc.seconds
    if isinstance(exc, errors.TimedOutError):  # rpc_error -503 ("Timeout", or any other text)
        return "TIMEOUT"
    if isinstance(exc, errors.RPCError):
        # Generated classes keep a generic `message` ("BAD_REQUEST"): name them by their table entry.
        name = _ERROR_NAMES.get(type(exc))
        return name if name is not None else str(exc.message)
    if isinstance(exc, TRANSPORT_ERRORS):
        return "TIMEOUT"
    raise exc


class TelethonConference(Conference):
    """One conference call carried by a Telethon ``TelegramClient`` (see :class:`Conference` for
    the arguments)."""

    types = types

    def function_class(self, name: str) -> Any:
        return getattr(functions.phone, name + "Request")

    async def invoke(self, function: Any) -> Any:
        return await self.client(function)

    def error_string(self, exc: BaseException) -> str:
        return error_string(exc)

    def attach(self) -> None:
        """Routes the client's pushed updates (``events.Raw``) to :meth:`handle_update`."""

        async def raw(update):
            self.handle_update(update)

        self._handler = raw
        self.client.add_event_handler(raw, events.Raw)

    def detach(self) -> None:
        handler = getattr(self, "_handler", None)
        if handler is not None:
            self.client.remove_event_handler(handler, events.Raw)
            self._handler = None
