"""Speech through the OBS browser source (issue 18.9, ``web.browser_audio``).

The real bot on eSpeak NG streams each message's audio to ``/ws/audio`` as it is
synthesised; the overlay page plays it with Web Audio. In headless Chromium the page's audio
is captured *in the page* (a ScriptProcessor tap on whatever the page connects to its
speakers, injected before the page loads), never from the sink: the page receives and plays
the speech, and a ``!skip`` or ``!volume 0`` silences what it has already scheduled at once.
The protocol tests read the socket with a real aiohttp client: start, PCM frames, end; a
deleted message and a ban stop it; the volume reaches it; a page that joins mid-message
gets the rest; the setting is validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from bot.app import App
from bot.config import ConfigError, load_config
from bot.core.messages import ChatMessage, ChatUser, MessageDeleted, Platform, Role, UserPurged
from bot.speech.outputs import ClipAudio, ClipStart, FanoutPlayer, OutputEvent
from bot.speech.player import AudioPlayer
from engine.base import EngineState
from tests.bot.web.test_browser import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, Browser
from tests.support.audio import PulseServer, SinkRecorder, rms
from tests.support.web_harness import espeak_bot

pytestmark = [pytest.mark.audio]

LONG = (
    "this is a long message for the browser source, it goes on and on so that there is "
    "plenty of speech still to come when the moderator skips it, one two three four five "
    "six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"
)

# Injected before the overlay loads: every node the page connects to its speakers is also
# connected to a ScriptProcessor that logs the level of each block the page renders.
TAP = """
(function () {
  window.__tap = { blocks: [], frames: 0 };
  const connect = AudioNode.prototype.connect;
  const tapped = new WeakSet();
  AudioNode.prototype.connect = function (dest) {
    const result = connect.apply(this, arguments);
    if (dest instanceof AudioDestinationNode && !tapped.has(this)) {
      tapped.add(this);
      const ctx = this.context;
      const proc = ctx.createScriptProcessor(1024, 1, 1);
      connect.call(this, proc);
      connect.call(proc, ctx.destination);
      proc.onaudioprocess = function (ev) {
        const x = ev.inputBuffer.getChannelData(0);
        let sum = 0;
        for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
        window.__tap.blocks.push([performance.now(), Math.sqrt(sum / x.length)]);
        window.__tap.frames += x.length;
      };
      window.__tapRate = ctx.sampleRate;
    }
    return result;
  };
})();
"""
LOUD = 0.01
"""Block RMS of eSpeak NG speech is far above this; Web Audio silence is exact zeros."""


def _user(login: str, *roles: Role) -> ChatUser:
    return ChatUser(
        id=f"id-{login}",
        login=login,
        display_name=login,
        roles=frozenset(roles),
        platform=Platform.TWITCH,
    )


def _message(text: str, user: ChatUser) -> ChatMessage:
    return ChatMessage(f"msg-{time.monotonic_ns()}", user, text, "terminal")


VIEWER = _user("viewer")
STREAMER = _user("streamer", Role.BROADCASTER)


async def _ready(app: App) -> None:
    assert await asyncio.wait_for(app.worker.wait_ready(), 120) is EngineState.READY


class ClipLog:
    """What the fan-out published, for how long a clip is and when its audio came."""

    def __init__(self, app: App) -> None:
        assert app.audio_out is not None
        self.events: list[tuple[float, OutputEvent]] = []
        app.audio_out.subscribe(lambda e: self.events.append((time.monotonic(), e)))

    def seconds(self) -> float:
        rate = next((e.rate for _, e in self.events if isinstance(e, ClipStart)), 0)
        frames = sum(e.samples.size for _, e in self.events if isinstance(e, ClipAudio))
        return frames / rate if rate else 0.0


@pytest_asyncio.fixture
async def audio_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Headless Chromium that may play audio without a click (as OBS's browser source does),
    with the in-page tap injected into every page."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install.sh --test)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = await asyncio.to_thread(webdriver.Chrome, service=service, options=options)
    try:
        browser = Browser(driver)
        await browser.call(
            driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": TAP}
        )
        yield browser
    finally:
        await asyncio.to_thread(driver.quit)


async def _blocks(browser: Browser, since: int = 0) -> list[tuple[float, float]]:
    rows = await browser.js(
        "return window.__tap ? window.__tap.blocks.slice(arguments[0]) : []", since
    )
    return [(float(t), float(level)) for t, level in rows]


async def _wait_loud(browser: Browser, since_ms: float, timeout_s: float = 60.0) -> float:
    """When (page clock, ms) the page first rendered speech after ``since_ms``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for stamp, level in await _blocks(browser):
            if stamp > since_ms and level > LOUD:
                return stamp
        await asyncio.sleep(0.05)
    raise AssertionError("the page never played any speech")


async def _rendered(browser: Browser, since_ms: float, hold_s: float) -> list[tuple[float, float]]:
    """Wait until the page has rendered ``hold_s`` of blocks after ``since_ms``; return them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        blocks = [(t, lv) for t, lv in await _blocks(browser) if t > since_ms]
        if blocks and blocks[-1][0] - since_ms >= hold_s * 1000:
            return blocks
        await asyncio.sleep(0.05)
    raise AssertionError("the page stopped rendering audio")


async def _silent_after(browser: Browser, since_ms: float, hold_s: float) -> float:
    """Wait until the page has rendered ``hold_s`` of blocks after ``since_ms``; return the
    page time (ms after ``since_ms``) of the last loud block among them (0 when none)."""
    loud = [t for t, lv in await _rendered(browser, since_ms, hold_s) if lv > LOUD]
    return (loud[-1] - since_ms) if loud else 0.0


async def _page_now(browser: Browser) -> float:
    return float(await browser.js("return performance.now()"))


@pytest.mark.slow
async def test_the_overlay_plays_the_speech_and_skip_silences_it_at_once(
    tmp_path: Path,
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    audio_browser: Browser,
) -> None:
    async with espeak_bot(tmp_path, pulse_server, browser_audio="only") as app:
        assert isinstance(app.player, FanoutPlayer)
        assert app.player.local is None  # `only` opens no device
        assert app.web is not None
        await _ready(app)
        clips = ClipLog(app)
        browser = audio_browser
        sink_recorder.start()
        await browser.get(app.web.base_url + "/overlay")
        await browser.wait_js("return document.body.dataset.audio === '1'", 30)

        # the page receives and plays the speech
        asked = await _page_now(browser)
        await app.on_message(_message(LONG, VIEWER))
        first = await _wait_loud(browser, asked)
        await _rendered(browser, first, 1.0)  # a second of it, then the moderator skips
        skipped_at = await _page_now(browser)
        heard_s = (skipped_at - first) / 1000
        total_s = clips.seconds()
        assert total_s - heard_s > 2.0, (total_s, heard_s)  # plenty was still scheduled
        await app.on_message(_message("!skip", STREAMER))
        last_loud_ms = await _silent_after(browser, skipped_at, hold_s=1.5)
        # the page goes quiet within a few render blocks of the skip (the command's own way
        # through the pipeline and the socket included) and stays quiet
        assert last_loud_ms < 400, last_loud_ms
        blocks = await _blocks(browser)
        loud_s = sum(1024 for t, lv in blocks if lv > LOUD) / float(
            await browser.js("return window.__tapRate")
        )
        print(
            f"browser audio: clip {total_s:.2f} s, heard {heard_s:.2f} s in the page before "
            f"!skip, last sound {last_loud_ms:.0f} ms after it, {loud_s:.2f} s loud in all"
        )
        assert 0.5 < loud_s < heard_s + 0.6, (loud_s, heard_s)

        # the next message plays again
        asked = await _page_now(browser)
        await app.on_message(_message("and the next message plays", VIEWER))
        await _wait_loud(browser, asked)
        recording = sink_recorder.stop()
    # `only`: nothing went to the local device
    assert rms(recording) < 1e-4, rms(recording)


@pytest.mark.slow
async def test_volume_reaches_the_page_at_once_even_for_audio_it_already_holds(
    tmp_path: Path, pulse_server: PulseServer, audio_browser: Browser
) -> None:
    async with espeak_bot(tmp_path, pulse_server, browser_audio="only") as app:
        assert app.web is not None
        await _ready(app)
        browser = audio_browser
        await browser.get(app.web.base_url + "/overlay")
        await browser.wait_js("return document.body.dataset.audio === '1'", 30)
        asked = await _page_now(browser)
        await app.on_message(_message(LONG, VIEWER))
        await _wait_loud(browser, asked)
        await app.on_message(_message("!volume 0", STREAMER))
        muted_at = await _page_now(browser)
        assert await _silent_after(browser, muted_at, hold_s=1.0) < 400
        assert app.speaker.current is not None  # still "playing", only silent
        await app.on_message(_message("!volume 100", STREAMER))
        loud_again = await _wait_loud(browser, await _page_now(browser), timeout_s=10)
        assert loud_again > muted_at


# -- the protocol, with a real WebSocket client ------------------------------------------------
class AudioSocket:
    """``/ws/audio`` read by aiohttp: control messages and PCM frames, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.got: list[dict[str, Any] | tuple[int, np.ndarray]] = []

    async def until(self, check: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            msg = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type is aiohttp.WSMsgType.BINARY:
                clip = struct.unpack_from("<I", msg.data)[0]
                pcm = np.frombuffer(msg.data, "<i2", offset=4)
                self.got.append((clip, pcm))
                continue
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            self.got.append(data)
            if check(data):
                return dict(data)

    def frames(self, clip: int) -> int:
        return sum(
            p.size for g in self.got if isinstance(g, tuple) and g[0] == clip for p in [g[1]]
        )


@pytest.mark.parametrize("mode", ["only", "also"])
async def test_the_socket_streams_start_pcm_and_end_and_a_deletion_or_ban_stops_it(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder, mode: str
) -> None:
    async with (
        espeak_bot(tmp_path, pulse_server, browser_audio=mode) as app,
        aiohttp.ClientSession() as http,
    ):
        assert app.web is not None
        assert isinstance(app.player, FanoutPlayer)
        assert isinstance(app.player.local, AudioPlayer) is (mode == "also")
        await _ready(app)
        url = app.web.base_url.replace("http", "ws") + "/ws/audio"
        async with http.ws_connect(url) as ws:
            sock = AudioSocket(ws)
            hello = await sock.until(lambda m: True, 10)
            assert hello == {"type": "volume", "volume": 1.0}
            sink_recorder.start()
            # a short message: start, PCM at its rate, end
            await app.on_message(_message("hello browser source", VIEWER))
            start = await sock.until(lambda m: m["type"] == "start")
            assert start["rate"] == 22050  # eSpeak NG's rate, as synthesised
            await sock.until(lambda m: m["type"] == "end" and m["clip"] == start["clip"])
            assert sock.frames(start["clip"]) > 0.3 * start["rate"]
            pcm = np.concatenate([g[1] for g in sock.got if isinstance(g, tuple)])
            assert np.abs(pcm).max() > 3000  # speech, not silence
            # a deleted message stops it on the socket
            doomed = _message(LONG, VIEWER)
            await app.on_message(doomed)
            start = await sock.until(lambda m: m["type"] == "start")
            await app.on_moderation(MessageDeleted(doomed.id))
            stop = await sock.until(lambda m: m["type"] in ("stop", "end"), 10)
            assert stop == {"type": "stop", "clip": start["clip"]}
            # a ban too
            await app.on_message(_message(LONG, _user("troll")))
            start = await sock.until(lambda m: m["type"] == "start")
            await app.on_moderation(UserPurged("id-troll", "troll"))
            stop = await sock.until(lambda m: m["type"] in ("stop", "end"), 10)
            assert stop == {"type": "stop", "clip": start["clip"]}
            # the volume, from chat
            await app.on_message(_message("!volume 40", STREAMER))
            volume = await sock.until(lambda m: m["type"] == "volume", 10)
            assert volume["volume"] == pytest.approx(0.4)
            # a page that joins mid-message gets the rest of it
            await app.on_message(_message(LONG, VIEWER))
            start = await sock.until(lambda m: m["type"] == "start")
            async with http.ws_connect(url) as late_ws:
                late = AudioSocket(late_ws)
                assert (await late.until(lambda m: True, 10))["type"] == "volume"
                joined = await late.until(lambda m: m["type"] == "start", 10)
                assert joined["clip"] == start["clip"]
                await late.until(lambda m: m["type"] in ("end", "stop"))
            recording = sink_recorder.stop()
    if mode == "also":
        assert rms(recording) > 0.003  # the device played it as well
    else:
        assert rms(recording) < 1e-4


async def test_without_browser_audio_there_is_no_audio_socket_and_the_device_plays(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        assert isinstance(app.player, AudioPlayer)
        assert app.audio_out is None
        async with http.get(app.web.base_url + "/ws/audio") as resp:
            assert resp.status == 404
        async with http.ws_connect(app.web.base_url.replace("http", "ws") + "/ws/overlay") as ws:
            msg = await ws.receive_json(timeout=10)
            assert msg["audio"] is False


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("loud", "'off', 'only' or 'also'"),
        ("yes", "say which"),
        ("1", "'off', 'only' or 'also'"),
    ],
)
def test_browser_audio_setting_is_validated(tmp_path: Path, value: str, error: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"web:\n  browser_audio: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "web.browser_audio" in str(caught.value)
    assert error in str(caught.value)
    path.write_text("web:\n  enabled: false\n  browser_audio: also\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs the web server"):
        load_config(path)
    path.write_text("web:\n  browser_audio: off\n", encoding="utf-8")
    assert load_config(path).web.browser_audio.value == "off"


async def test_pages_of_other_sites_cannot_listen_to_the_feeds(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    async with (
        espeak_bot(tmp_path, pulse_server, browser_audio="only") as app,
        aiohttp.ClientSession() as http,
    ):
        assert app.web is not None
        base = app.web.base_url
        ws_base = base.replace("http", "ws")
        for path in ("/ws/audio", "/ws/overlay"):
            for origin in ("http://evil.example", "null", "http://127.0.0.1:1", "file://"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(ws_base + path, headers={"Origin": origin})
                assert refused.value.status == 403, (path, origin)
            async with http.ws_connect(ws_base + path, headers={"Origin": base}) as ws:
                assert (await ws.receive_json(timeout=10))["type"] in ("volume", "caption")


@pytest.mark.slow
async def test_a_page_that_stops_reading_holds_up_neither_speech_nor_other_pages(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    async with (
        espeak_bot(tmp_path, pulse_server, browser_audio="only") as app,
        aiohttp.ClientSession() as http,
    ):
        assert app.web is not None
        assert app.web.port is not None
        await _ready(app)
        # a WebSocket client that completes the handshake and then never reads again
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", app.web.port))
        stuck.sendall(
            b"GET /ws/audio HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            async with http.ws_connect(app.web.base_url.replace("http", "ws") + "/ws/audio") as ws:
                good = AudioSocket(ws)
                await good.until(lambda m: m["type"] == "volume", 10)
                done = asyncio.Event()
                finished: list[str] = []

                def on_speech(event: Any) -> None:
                    if event.kind.value == "finished":
                        finished.append(event.item.message.id)
                        done.set()

                app.speaker.add_listener(on_speech)
                messages = [_message(LONG, VIEWER) for _ in range(2)]
                for message in messages:
                    await app.on_message(message)
                for _ in messages:
                    start = await good.until(lambda m: m["type"] == "start")
                    end = await good.until(lambda m: m["type"] in ("end", "stop"))
                    assert end == {"type": "end", "clip": start["clip"]}
                    assert good.frames(start["clip"]) > 5 * start["rate"]
                deadline = time.monotonic() + 60
                while len(finished) < 2 and time.monotonic() < deadline:
                    done.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 1)
                assert finished == [m.id for m in messages]
        finally:
            stuck.close()
