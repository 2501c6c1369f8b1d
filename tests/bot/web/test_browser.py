"""The overlay and the control panel in a real headless Chromium, against the running bot.

Debian's ``chromium`` and ``chromium-driver`` driven by Selenium (no browser download); the bot
is the real App with tiny F5 weights on the CPU, playing into the PulseAudio null sink whose
monitor is recorded, so "the caption shows while the audio plays" and "skip stops the sound"
are checked against what actually reached the sink. Screenshots of both pages are written to
``test-artifacts/`` for people to look at.

Selenium is synchronous; every browser call runs in a worker thread so the bot's event loop
(which is the test's loop) keeps serving the page while the browser waits.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from bot.app import App
from bot.core.messages import ChatMessage, ChatUser, Platform
from bot.speech.speaker import Outcome, SpeechEventKind
from engine.base import EngineState
from tests.support import REPO
from tests.support.audio import PulseServer, SinkRecorder, active_span, rms
from tests.support.web_harness import EventLog, espeak_bot, running_bot

pytestmark = [pytest.mark.audio, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"
T = TypeVar("T")

# Flags measured to work on these machines: headless as root, and no background connections
# (the network is closed; without these Chromium keeps trying to reach Google's services).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,900",
)


class Browser:
    """A headless Chromium whose every call runs off the event loop."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def wait_js(self, script: str, timeout_s: float = 60.0, every_s: float = 0.02) -> Any:
        """Poll ``script`` (a JS expression body with ``return``) until it returns truthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.js(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"browser condition never held: {script}")
            await asyncio.sleep(every_s)

    async def click(self, css: str) -> None:
        """A real click; found again if the live page re-rendered the element meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def click() -> None:
            for attempt in range(5):
                try:
                    self.driver.find_element(By.CSS_SELECTOR, css).click()
                    return
                except StaleElementReferenceException:
                    if attempt == 4:
                        raise

        await self.call(click)

    async def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        element = await self.call(self.driver.find_element, By.CSS_SELECTOR, css)
        await self.call(element.clear)
        await self.call(element.send_keys, text)

    async def text(self, css: str) -> str:
        return str(await self.js("return document.querySelector(arguments[0]).textContent", css))

    async def record_engine_states(self) -> None:
        """Have every page loaded from now on log each engine state it displays, in order."""
        script = """
            window.__engineStates = [];
            new MutationObserver(function () {
                const el = document.getElementById('engine-state');
                const seen = window.__engineStates;
                if (el && el.textContent !== '…' && seen[seen.length - 1] !== el.textContent) {
                    seen.push(el.textContent);
                }
            }).observe(document, {subtree: true, childList: true, characterData: true});
        """
        await self.call(
            self.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": script}
        )

    async def screenshot(self, name: str, *, transparent: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        if transparent:
            # Keep the page's own transparency in the PNG, as OBS composites it.
            color = {"r": 0, "g": 0, "b": 0, "a": 0}
            await self.call(
                self.driver.execute_cdp_cmd,
                "Emulation.setDefaultBackgroundColorOverride",
                {"color": color},
            )
        ok = await self.call(self.driver.save_screenshot, str(path))
        assert ok, f"could not save {path}"
        return path


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Debian's Chromium through Debian's chromedriver, with a throwaway profile."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install.sh --test)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = await asyncio.to_thread(webdriver.Chrome, service=service, options=options)
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)


def _panel_url(app: App, path: str = "/") -> str:
    assert app.web is not None
    return f"{app.web.base_url}{path}?token={app.web.token}"


async def _ready(app: App) -> None:
    assert await asyncio.wait_for(app.worker.wait_ready(), 120) is EngineState.READY


def _message(text: str, login: str = "viewer", name: str | None = None) -> ChatMessage:
    user = ChatUser(
        id=f"id-{login}", login=login, display_name=name or login, platform=Platform.TWITCH
    )
    return ChatMessage(f"msg-{time.monotonic_ns()}", user, text, "terminal")


# Null-sink silence is exact zeros; the tiny model's noise is far above this.
SOUND = 1e-4


async def test_overlay_shows_the_caption_while_the_audio_plays_and_clears_after(
    tmp_path: Path,
    tiny_f5: dict[str, Any],
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    browser: Browser,
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        assert app.web is not None
        await _ready(app)
        events = EventLog(app)
        query = "size=44&position=bottom&align=center&color=%23ffffff&name_color=%23ffd166&width=70"
        await browser.get(f"{app.web.base_url}/overlay?{query}")
        await browser.wait_js("return document.body.dataset.connected === '1'")
        # Transparent page: nothing but the (hidden) caption box.
        assert await browser.js("return getComputedStyle(document.body).backgroundColor") in (
            "rgba(0, 0, 0, 0)",
            "transparent",
        )
        assert not await browser.js(
            "return document.getElementById('caption').classList.contains('visible')"
        )
        # Appearance comes from the query string.
        assert (
            await browser.js("return getComputedStyle(document.getElementById('caption')).fontSize")
            == "44px"
        )

        sink_recorder.start()
        text = "this caption stays on screen exactly while the voice is heard"
        await app.on_message(_message(text, "captioned", "Captioned_Viewer"))
        await browser.wait_js(
            "return document.getElementById('caption').classList.contains('visible')"
        )
        shown_frame = sink_recorder.frames
        assert await browser.text("#caption-name") == "Captioned_Viewer"
        assert await browser.text("#caption-text") == text
        # Fully faded in before the picture is taken.
        await browser.wait_js(
            "return getComputedStyle(document.getElementById('caption')).opacity === '1'", 5
        )
        await browser.screenshot("overlay.png", transparent=True)
        assert app.speaker.current is not None  # still playing after the screenshot

        await browser.wait_js(
            "return !document.getElementById('caption').classList.contains('visible')", 120
        )
        hidden_frame = sink_recorder.frames
        _, finished = await events.wait_for(lambda e: e.kind is SpeechEventKind.FINISHED)
        recording = sink_recorder.stop(settle_s=1.0)

    rate = sink_recorder.rate
    assert finished.outcome is Outcome.PLAYED
    start, end = active_span(recording, threshold=SOUND)
    assert end - start > rate  # the clip lasts seconds, so there is a "while"
    # Sound was reaching the sink while the caption was on screen ...
    assert rms(recording[shown_frame : min(hidden_frame, shown_frame + rate // 2)]) > SOUND
    # ... the caption appeared while the clip was audible (not before it, not after it) ...
    assert start - rate // 4 <= shown_frame < end
    # ... and was taken down only once the clip had ended: silence after it.
    assert end <= hidden_frame + rate // 10
    assert rms(recording[hidden_frame + rate // 4 : hidden_frame + rate]) < SOUND / 10


async def test_skip_button_stops_the_sound(
    tmp_path: Path,
    tiny_f5: dict[str, Any],
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    browser: Browser,
) -> None:
    await browser.record_engine_states()
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        events = EventLog(app)
        await browser.get(_panel_url(app))
        # The page shows the engine's state as it changes, and ends up ready.
        await browser.wait_js(
            "return document.getElementById('engine-state').textContent === 'ready'", 120
        )
        assert await browser.js("return document.getElementById('engine').dataset.state") == "ready"
        assert "ready" in await browser.text("#engine-detail")
        seen = await browser.js("return window.__engineStates")
        # Whatever part of the start-up the page caught (it opened while the model was
        # loading), it showed it in order, live, and finished on ready.
        lifecycle = ["stopped", "loading", "warming", "ready"]
        assert seen[-1] == "ready", seen
        assert [lifecycle.index(s) for s in seen] == sorted(lifecycle.index(s) for s in seen), seen

        sink_recorder.start()
        # Under engine.f5.SPLIT_ABOVE_CHARS (120): one piece of many seconds. A longer text
        # starts with a short lead-in piece, which the tiny random model may render below
        # SOUND, so "audible before the click" would test the model's noise, not the skip.
        long_text = (
            "this long message would keep talking for many seconds if nobody pressed the "
            "skip button in the panel"
        )
        assert len(long_text) <= 120
        await app.on_message(_message(long_text, "talker"))
        await browser.wait_js(
            "return document.getElementById('now-playing').dataset.id !== undefined", 120
        )
        assert "talker" in await browser.text("#now-playing")
        sink_recorder.wait_frames(sink_recorder.frames + sink_recorder.rate // 2)  # heard a while
        assert await browser.js("return document.getElementById('skip').disabled") is False
        await browser.click("#skip")
        clicked_frame = sink_recorder.frames
        _, finished = await events.wait_for(lambda e: e.kind is SpeechEventKind.FINISHED)
        await browser.wait_js(
            "return document.getElementById('now-playing').dataset.id === undefined", 10
        )
        await browser.wait_js(
            "const li = document.querySelector('#history li');"
            "return li && li.textContent.includes('skipped')",
            10,
        )
        recording = sink_recorder.stop(settle_s=1.5)
        assert (await browser.text("#notice")).startswith("skipped talker")

    rate = sink_recorder.rate
    assert finished.outcome is Outcome.SKIPPED
    job = finished.item.job
    assert job is not None
    assert job.cancelled
    start, end = active_span(recording, threshold=SOUND)
    assert start < clicked_frame  # it was audible before the click
    # Silence from shortly after the click (the monitor lags the click by a block or so).
    assert end <= clicked_frame + rate // 2
    assert rms(recording[clicked_frame + rate // 2 :]) < SOUND / 10
    assert len(recording) - clicked_frame > rate  # and that silence was watched for a second


async def test_panel_refuses_a_missing_or_wrong_token(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer, browser: Browser
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        assert app.web is not None
        await browser.get(f"{app.web.base_url}/")
        await browser.wait_js("return !document.getElementById('login').hidden", 10)
        assert await browser.js("return document.getElementById('main').hidden") is True
        # The API refuses the page's requests without the token.
        status = await browser.js("return fetch('/api/skip', {method: 'POST'}).then(r => r.status)")
        assert status == 401
        await browser.type("#token-input", "not-the-token")
        await browser.click("#token-save")
        await browser.wait_js(
            "return document.getElementById('login-error').textContent.includes('wrong token')", 10
        )
        assert await browser.js("return document.getElementById('main').hidden") is True
        await browser.type("#token-input", str(app.web.token))
        await browser.click("#token-save")
        await browser.wait_js("return !document.getElementById('main').hidden", 10)
        # Opening the printed link stores the token and takes it out of the address bar.
        await browser.get(_panel_url(app))
        await browser.wait_js("return !document.getElementById('main').hidden", 10)
        url = await browser.call(lambda: browser.driver.current_url)
        assert "token" not in url


async def test_panel_shows_an_engine_that_failed_to_load(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer, browser: Browser
) -> None:
    broken = {"engine": {"f5": {"checkpoint": str(tmp_path / "missing_model.safetensors")}}}
    async with running_bot(tmp_path, tiny_f5, pulse_server, **broken) as app:
        assert await asyncio.wait_for(app.worker.wait_ready(), 120) is EngineState.ERROR
        await browser.get(_panel_url(app))
        await browser.wait_js(
            "return document.getElementById('engine').dataset.state === 'error'", 10
        )
        assert await browser.text("#engine-state") == "error"
        assert "missing_model.safetensors" in await browser.text("#engine-detail")


async def test_panel_queue_test_line_and_mutes_in_the_browser(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer, browser: Browser
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        await _ready(app)
        await app.voices.names()
        await browser.get(_panel_url(app))
        await browser.wait_js(
            "return document.getElementById('engine-state').textContent === 'ready'"
        )
        await browser.click("#pause")
        await browser.wait_js("return !document.getElementById('resume').hidden", 10)
        assert app.speaker.paused

        # The test line box speaks in the chosen voice, through the chat pipeline.
        await browser.wait_js(
            "return Array.from(document.getElementById('say-voice').options)"
            ".some(o => o.value === 'alice')",
            10,
        )
        await browser.js("document.getElementById('say-voice').value = 'alice'")
        await browser.type("#say-text", "testing the alice voice from the panel")
        await browser.click("#say")
        await browser.wait_js(
            "return document.querySelectorAll('#queue li[data-id]').length === 1", 10
        )
        for text in ("first viewer message", "second viewer message"):
            await app.on_message(_message(text, "viewer_one", "Viewer_One"))
        await app.on_message(_message("a message from a troll", "troll"))
        await browser.wait_js(
            "return document.querySelectorAll('#queue li[data-id]').length === 4", 10
        )
        queued = app.speaker.queue.snapshot()
        assert queued[0].message.source == "panel"
        assert queued[0].voice == "alice"
        assert queued[0].text == "testing the alice voice from the panel"
        assert await browser.js("return document.getElementById('say-text').value") == ""

        # Remove one item with its button: the page and the queue both lose exactly that one.
        victim = queued[1]
        await browser.click(f"#queue li[data-id='{victim.seq}'] button.remove")
        await browser.wait_js(
            "return document.querySelectorAll('#queue li[data-id]').length === 3", 10
        )
        assert victim not in app.speaker.queue.snapshot()
        assert len(app.speaker.queue) == 3

        # Mute from the panel: the troll's queued message goes and the mute is listed.
        await browser.type("#mute-user", "@troll")
        await browser.type("#mute-duration", "15m")
        await browser.click("#mute")
        await browser.wait_js(
            "return document.querySelector(\"#mutes li[data-user='troll']\") !== null", 10
        )
        assert [it.message.user.login for it in app.speaker.queue.snapshot()] == [
            queued[0].message.user.login,
            "viewer_one",
        ]
        assert (
            app.store.mute_of(ChatUser("id-troll", "troll", "troll", platform=Platform.TWITCH))
            is not None
        )

        # Volume slider: the player follows.
        await browser.js(
            "const v = document.getElementById('volume'); v.value = '65';"
            "v.dispatchEvent(new Event('change'));"
        )
        await browser.wait_js(
            "return document.getElementById('volume-value').textContent === '65%'", 10
        )
        deadline = time.monotonic() + 10
        while abs(app.player.volume - 0.65) > 1e-6 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert app.player.volume == pytest.approx(0.65)

        await browser.screenshot("panel.png")

        # Resume: the queue plays in order and the history fills up.
        await browser.click("#resume")
        played = (
            "return Array.from(document.querySelectorAll('#history li'))"
            ".filter(li => li.textContent.includes('played')).length"
        )
        await browser.wait_js(played + " >= 1", 120)
        first_played = await browser.js(
            "return Array.from(document.querySelectorAll('#history li'))"
            ".find(li => li.textContent.includes('played')).textContent"
        )
        assert "testing the alice voice from the panel" in first_played
        assert not app.speaker.paused
        await browser.click("#mutes li[data-user='troll'] button.unmute")
        await browser.wait_js(
            "return document.querySelector(\"#mutes li[data-user='troll']\") === null", 10
        )
        assert (
            app.store.mute_of(ChatUser("id-troll", "troll", "troll", platform=Platform.TWITCH))
            is None
        )
        await browser.screenshot("panel-history.png")


def _on(platform: Platform, text: str, login: str) -> ChatMessage:
    user = ChatUser(
        id=f"{platform.value}-{login}", login=login, display_name=login, platform=platform
    )
    return ChatMessage(f"msg-{time.monotonic_ns()}", user, text, platform.value)


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        # default: nothing on a one-platform stream, labels once a second platform speaks
        ("", ["", "YouTube", "Twitch"]),
        ("platform=1", ["Twitch", "YouTube", "Twitch"]),
        ("platform=0", ["", "", ""]),
    ],
)
async def test_the_overlay_and_the_panel_show_each_messages_platform(
    tmp_path: Path,
    pulse_server: PulseServer,
    browser: Browser,
    query: str,
    labels: list[str],
) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app:
        assert app.web is not None
        events = EventLog(app)
        await browser.get(f"{app.web.base_url}/overlay?{query}")
        await browser.wait_js("return document.body.dataset.connected === '1'")
        lines = [
            (Platform.TWITCH, "first from twitch", "tina"),
            (Platform.YOUTUBE, "then from youtube", "yuri"),
            (Platform.TWITCH, "twitch again", "tina"),
        ]
        for (platform, text, login), label in zip(lines, labels, strict=True):
            message = _on(platform, text, login)
            await app.on_message(message)
            await browser.wait_js(
                "const b = document.getElementById('caption');"
                " return b.classList.contains('visible')"
                f" && b.dataset.platform === '{platform.value}'"
                f" && document.getElementById('caption-text').textContent === '{text}'",
                60,
            )
            assert await browser.text("#caption-platform") == label
            assert await browser.text("#caption-name") == login
            await events.wait_for(
                lambda e, m=message: e.kind is SpeechEventKind.FINISHED and e.item.message is m
            )
        # The panel's history names the platform of every line.
        await browser.get(_panel_url(app))
        history = (
            "return Array.from(document.querySelectorAll('#history li')).map(li => li.textContent)"
        )
        await browser.wait_js(history + ".length >= 3", 30)
        shown = await browser.js(history)
        assert any("YouTube" in h and "then from youtube" in h for h in shown), shown
        assert sum("Twitch" in h for h in shown) >= 2, shown
