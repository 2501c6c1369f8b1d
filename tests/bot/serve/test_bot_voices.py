"""With ``engine.name: remote`` the bot's voices are the server's: ``!voices``, ``!voice``.

The whole App (pipeline, commands, store, speaker, the engine thread running the remote
engine) against a real serve process; the bot's own voices folder is empty, the server's has
``narrator`` and ``pirate``. Only the audio device is the test harness's recording player.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from bot.app import App
from bot.config import parse_config
from bot.core.messages import ChatMessage, ChatUser
from engine.base import EngineState
from tests.bot.serve.harness import launch_serve
from tests.support.chat_harness import VIEWER, RecordingPlayer, until

_ids = itertools.count(1)


async def test_voice_list_and_choice_come_from_the_server(tmp_path: Path) -> None:
    served_voices = tmp_path / "srv" / "voices"
    for name in ("narrator", "pirate"):
        (served_voices / name).mkdir(parents=True)
    server = launch_serve(tmp_path / "srv", {"name": "espeak"}, voices={"dir": str(served_voices)})
    cfg = parse_config(
        {
            "engine": {"name": "remote", "remote": {"url": server.url}},
            "storage": {"dir": str(server.state_dir)},
            "voices": {"dir": str(tmp_path / "bot-voices")},  # nothing here
            "web": {"enabled": False},
            "audio": {"gap_ms": 0},
        },
        tmp_path,
    )
    player = RecordingPlayer()
    app = App(cfg, player=player)  # type: ignore[arg-type]
    replies: list[str] = []

    async def send(text: str, user: ChatUser = VIEWER) -> None:
        async def reply(line: str) -> None:
            replies.append(line)

        await app.chat.handle(
            ChatMessage(id=f"v{next(_ids)}", user=user, text=text, source="test", reply=reply)
        )

    try:
        await app.start()
        assert await asyncio.wait_for(app.worker.wait_ready(), 60) is EngineState.READY
        await send("!voices")
        await until(lambda: bool(replies), 10)
        listed = " ".join(replies)
        assert "narrator" in listed
        assert "pirate" in listed
        replies.clear()
        await send("!voice pirat")
        await until(lambda: bool(replies), 10)
        assert "pirate" in replies[-1]  # did you mean: the server's names
        replies.clear()
        await send("!voice pirate")
        await until(lambda: bool(replies), 10)
        assert replies[-1] == "your voice is now pirate"
        await send("arr matey, this is spoken on the other PC")
        await until(lambda: bool(player.clips), 60)
        assert player.clips[0] > 24_000
        assert server.status()["served"] == 1
    finally:
        await app.close()
        server.stop()
