"""Joins a Telegram conference call by its link with Pyrogram (Kurigram), end-to-end encrypted by confchain.

    pip install "confchain[pyrogram]"
    TG_API_ID=... TG_API_HASH=... python pyrogram_join.py https://t.me/call/<slug>

What this example leaves to you, as a real application owns it:
  * the media stack: MEDIA_PARAMS below is a placeholder for the join JSON your WebRTC stack
    (tgcalls, ntgcalls, ...) produces; the transport parameters Telegram answers with arrive in
    on_connection; frames are encrypted with session.encrypt / session.decrypt;
  * showing the emojis (verification_done) for the members to compare aloud;
  * the rejoin policy: this example stops when the session is removed, fails or leaves.
"""

import asyncio
import json
import os
import sys

from pyrogram import Client, raw

import confchain
from confchain.pyrogram import PyrogramConference, session_config

SSRC = 0x1234  # our audio source, as the media stack picked it

MEDIA_PARAMS = json.dumps(
    {"ufrag": "<ice ufrag>", "pwd": "<ice pwd>", "fingerprints": [], "ssrc": SSRC, "ssrc-groups": []}
)

DONE = ("removed", "failed", "left")


async def main(link: str) -> None:
    slug = link.rstrip("/").rsplit("/", 1)[-1]
    api_id, api_hash = int(os.environ["TG_API_ID"]), os.environ["TG_API_HASH"]
    # sleep_threshold=0: the session sees every FLOOD_WAIT_X and schedules its own retries.
    async with Client("confchain", api_id=api_id, api_hash=api_hash, sleep_threshold=0) as client:
        me = await client.get_me()
        # The call size limit of Telegram's app config (conference_call_size_limit), if it gives one.
        session = confchain.Session(me.id, **await session_config(client))
        rng = confchain.Rng.from_os()
        conf = PyrogramConference(
            client,
            session,
            rng,
            params=MEDIA_PARAMS,
            call=raw.types.InputGroupCallSlug(slug=slug),  # the real identity is learned from the join
            source=SSRC,
            on_connection=lambda params, presentation: print("for the media stack:", params[:80], "..."),
        )
        conf.attach()
        session.join(conf.clock(), rng)

        def events_say_stop() -> bool:
            while (e := session.poll_event()) is not None:
                if e.kind == "verification_done":
                    print("compare with the others:", " ".join(e.emojis))
                elif e.kind == "message_received":
                    print("message from", e.from_id, e.text)
                else:
                    print(e)
            return session.state in DONE

        try:
            await conf.run(until=events_say_stop)
        finally:
            if session.state not in DONE:
                session.leave(conf.clock())
                await conf.flush()
            conf.detach()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
