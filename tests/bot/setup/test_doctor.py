"""``ishowtts doctor``: every check in its passing and its failing state, on real conditions.

Missing and present files, a folder that cannot be written, a port this test really binds,
a voice folder without its transcript, a real PulseAudio sink, a real SQLite database, a real
Twitch token file, the real hub client against a local hub double (present in its cache,
downloadable, 404, offline, and a hub that never answers). CUDA is absent on the test
machines, which is the GPU check's real failing state; its passing states are judged from
injected probe results, the one thing a CPU machine cannot produce.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml

from bot.config import Config, parse_config
from bot.setup.doctor import (
    CheckResult,
    GpuProbe,
    check_audio,
    check_config,
    check_database,
    check_gpu,
    check_packages,
    check_port,
    check_python,
    check_twitch,
    check_voices,
    check_weights,
    declared_python,
    doctor_command,
    probe_gpu,
    render,
    run_checks,
)
from bot.setup.voice_import import add_voice_command
from bot.sources.twitch.auth import SCOPES, StoredToken, TokenStore, token_path
from bot.state.settings import state_dir
from engine.config import EngineConfig
from engine.voices import builtin_clip
from tests.support import REPO
from tests.support.audio import PulseServer
from tests.support.hub_double import hub_double

TRANSCRIPT = "Some call me nature, others call me mother nature."
CLIENT_ID = "abcdefghij0123456789"


def cfg_of(tmp_path: Path, **sections: Any) -> Config:
    return parse_config(sections, tmp_path)


def engine_of(**keys: Any) -> EngineConfig:
    return parse_config({"engine": keys}, Path.cwd()).engine


# -- Python and packages ------------------------------------------------------------------


def test_python_version() -> None:
    ok = check_python()
    assert ok.status == "ok"
    assert sys.executable in ok.summary
    old = check_python((3, 10, 13), "/usr/bin/python3.10")
    assert old.status == "fail"
    assert "3.10.13" in old.summary
    assert old.fix is not None
    assert "3.11" in old.fix
    assert declared_python() == (3, 11)


def test_declared_packages_are_installed() -> None:
    result = check_packages()
    assert result.status == "ok", result.summary
    assert "f5-tts 1.1.22" in result.summary
    assert "torch " in result.summary


def test_a_missing_or_wrong_package_fails() -> None:
    result = check_packages(["numpy>=1.26", "ishowtts-no-such-package>=1", "numpy<1"])
    assert result.status == "fail"
    assert "ishowtts-no-such-package is missing" in result.summary
    assert "numpy" in result.summary
    assert "<1 is needed" in result.summary
    assert result.fix is not None
    assert "scripts/install.sh" in result.fix
    # Requirements for another platform do not count.
    other = check_packages(['ishowtts-no-such-package; sys_platform == "nonexistent"'])
    assert other.status == "ok"


# -- GPU ----------------------------------------------------------------------------------

H100 = GpuProbe(
    "2.14.1+cu130", "13.0", True, "NVIDIA H100 80GB HBM3", 85 * 1024**3, 80 * 1024**3, (9, 0)
)


def test_the_real_gpu_probe() -> None:
    """On the test machines CUDA is absent: the GPU check's real failing state. On a GPU
    machine the same test checks the real passing state instead."""
    probe = probe_gpu()
    auto = check_gpu(engine_of(), probe)
    if probe.available:
        assert probe.name
        assert probe.total_memory is not None
        assert probe.total_memory > 0
        assert probe.capability is not None
        assert auto.status in ("ok", "warn")
        assert auto.summary.startswith(f"{probe.name}, ")
        assert f"compute {probe.capability[0]}.{probe.capability[1]}" in auto.summary
        return
    assert auto.status == "warn"
    assert "eSpeak NG" in auto.summary
    assert auto.fix is not None
    f5 = check_gpu(engine_of(name="f5"), probe)
    assert f5.status == "warn"
    assert "15x slower" in f5.summary
    forced = check_gpu(engine_of(device="cuda"), probe)
    assert forced.status == "fail"
    assert "engine.device is cuda" in forced.summary
    assert check_gpu(engine_of(name="espeak"), probe).status == "skip"
    if probe.cuda_build is None:
        assert "CPU-only build" in auto.summary


def test_a_gpu_is_named_with_memory_and_fp16() -> None:
    result = check_gpu(engine_of(), H100)
    assert result.status == "ok"
    assert result.summary == ("NVIDIA H100 80GB HBM3, 85.0 GB (80.0 GB free), compute 9.0, fp16")
    fp32 = check_gpu(engine_of(f5={"precision": "fp32"}), H100)
    assert fp32.status == "ok"
    assert "fp32" in fp32.summary
    on_cpu = check_gpu(engine_of(device="cpu"), H100)
    assert on_cpu.status == "warn"
    assert on_cpu.fix == "set engine.device to auto to use the GPU"


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (
            GpuProbe("2.4", "12.1", True, "Tesla P100", 16 * 1024**3, None, (6, 0)),
            "precision: fp32",
        ),
        (
            GpuProbe(
                "2.4", "12.1", True, "NVIDIA GeForce GTX 1660 SUPER", 6 * 1024**3, None, (7, 5)
            ),
            "fp32",
        ),
        (
            GpuProbe("2.4", "12.1", True, "NVIDIA GeForce GT 1030", 2 * 1024**3, None, (6, 1)),
            "espeak",
        ),
    ],
)
def test_gpus_that_need_settings_warn(probe: GpuProbe, expected: str) -> None:
    result = check_gpu(engine_of(), probe)
    assert result.status == "warn"
    assert result.fix is not None
    assert expected in result.fix


def test_a_cuda_build_without_a_driver_says_so() -> None:
    probe = GpuProbe("2.14.1+cu130", "13.0", False, error="RuntimeError: no driver")
    result = check_gpu(engine_of(), probe)
    assert result.status == "warn"
    assert "no driver" in result.summary
    assert result.fix is not None
    assert "nvidia-smi" in result.fix


# -- F5 weights ---------------------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache


HUB_F5 = {
    "checkpoint": "hf://acme/f5/F5_Base/model.safetensors",
    "vocab": "hf://acme/f5/F5_Base/vocab.txt",
    "vocoder": "acme/vocos",
}


def serve_weights(hub: Any) -> None:
    hub.add("acme/f5", "F5_Base/model.safetensors", b"\0" * 2_000_000)
    hub.add("acme/f5", "F5_Base/vocab.txt", b" \na\nb\n")
    hub.add("acme/vocos", "config.yaml", b"feature_extractor: {}\n")
    hub.add("acme/vocos", "pytorch_model.bin", b"\1" * 1_000_000)


def test_local_weight_files_present_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    (folder / "vocos").mkdir(parents=True)
    for name in ("model.safetensors", "vocab.txt", "vocos/config.yaml", "vocos/pytorch_model.bin"):
        (folder / name).write_bytes(b"x")
    f5 = {"checkpoint": "weights/model.safetensors", "vocab": "weights/vocab.txt"}
    f5["vocoder"] = "weights/vocos"
    ok = check_weights(cfg_of(tmp_path, engine={"name": "f5", "f5": f5}).engine)
    assert ok.status == "ok"
    assert ok.summary == "all 4 files present (local files)"

    (folder / "vocos" / "pytorch_model.bin").unlink()
    missing = check_weights(cfg_of(tmp_path, engine={"name": "f5", "f5": f5}).engine)
    assert missing.status == "fail"
    assert "vocoder (pytorch_model.bin)" in missing.summary
    assert "does not exist" in missing.summary
    assert missing.fix is not None
    assert "engine.f5.vocoder" in missing.fix
    # With engine auto the bot still speaks (eSpeak NG): a warning, not a failure.
    auto = check_weights(cfg_of(tmp_path, engine={"name": "auto", "f5": f5}).engine)
    assert auto.status == "warn"
    assert "eSpeak NG" in auto.summary
    espeak = check_weights(cfg_of(tmp_path, engine={"name": "espeak", "f5": f5}).engine)
    assert espeak.status == "skip"


def test_weights_downloadable_then_cached(tmp_path: Path, hub_cache: Path) -> None:
    from huggingface_hub import hf_hub_download

    engine = cfg_of(tmp_path, engine={"name": "f5", "f5": HUB_F5}).engine
    with hub_double() as hub:
        serve_weights(hub)
        result = check_weights(engine, endpoint=hub.url)
        assert result.status == "ok", result.summary
        assert result.summary.startswith(
            "model.safetensors, vocab.txt, config.yaml, pytorch_model.bin not downloaded yet: "
            "3 MB is fetched from the hub on first start"
        )
        assert [m for m, _ in hub.requests] == ["HEAD"] * 4
        # Download them with the real client into the cache the doctor looks at.
        for repo, name in [
            ("acme/f5", "F5_Base/model.safetensors"),
            ("acme/f5", "F5_Base/vocab.txt"),
            ("acme/vocos", "config.yaml"),
            ("acme/vocos", "pytorch_model.bin"),
        ]:
            # cache_dir explicitly: huggingface_hub reads HF_HUB_CACHE only at import,
            # which an earlier test in the same process may have done already.
            hf_hub_download(repo, name, endpoint=hub.url, cache_dir=hub_cache)
        hub.requests.clear()
        cached = check_weights(engine, endpoint=hub.url)
        assert hub.requests == []  # cached files need no network at all
    assert cached.status == "ok"
    assert cached.summary == "all 4 files present (the Hugging Face cache)"


def test_weights_missing_on_the_hub(tmp_path: Path, hub_cache: Path) -> None:
    engine = cfg_of(tmp_path, engine={"name": "f5", "f5": HUB_F5}).engine
    with hub_double() as hub:
        serve_weights(hub)
        del hub.files["acme/f5/F5_Base/vocab.txt"]
        result = check_weights(engine, endpoint=hub.url)
    assert result.status == "fail"
    assert "vocab (vocab.txt): no such file on the hub" in result.summary


def test_weights_offline_and_not_cached(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = cfg_of(tmp_path, engine={"name": "f5", "f5": HUB_F5}).engine
    with hub_double() as hub:
        serve_weights(hub)
        result = check_weights(engine, endpoint=hub.url)
        assert hub.requests == []  # HF_HUB_OFFLINE: no network at all
    assert result.status == "fail"
    assert "HF_HUB_OFFLINE is on" in result.summary


def test_a_hub_that_never_answers_is_asked_once(tmp_path: Path, hub_cache: Path) -> None:
    engine = cfg_of(tmp_path, engine={"name": "auto", "f5": HUB_F5}).engine
    with hub_double() as hub:
        hub.hang = True
        result = check_weights(engine, endpoint=hub.url, timeout_s=0.5)
        asked = list(hub.requests)
    assert result.status == "warn"  # engine auto: the bot falls back to eSpeak NG
    assert "cannot be reached" in result.summary
    assert len(asked) == 1  # one timeout, then the other files are not waited for


def test_a_refused_connection_is_unreachable(tmp_path: Path, hub_cache: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = cfg_of(tmp_path, engine={"name": "f5", "f5": HUB_F5}).engine
    result = check_weights(engine, endpoint=f"http://127.0.0.1:{port}", timeout_s=2)
    assert result.status == "fail"
    assert "the hub cannot be reached" in result.summary


# -- voices -------------------------------------------------------------------------------


def import_voice(voices_dir: Path, name: str, samples: np.ndarray, rate: int) -> None:
    clip = voices_dir.parent / f"{name}-source.wav"
    sf.write(str(clip), samples, rate)
    voices = parse_config({"voices": {"dir": str(voices_dir)}}, voices_dir.parent).voices
    assert add_voice_command(voices, name, clip, TRANSCRIPT, out=io.StringIO()) == 0


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(builtin_clip()), dtype="float32")
    return audio, rate


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_good_voices_pass(tmp_path: Path, speech: Any) -> None:
    import_voice(tmp_path / "voices", "alice", *speech)
    results = by_name(check_voices(cfg_of(tmp_path, voices={"dir": "voices"}).voices))
    assert results["voice alice"].status == "ok"
    assert results["voice alice"].summary == "alice/reference.wav"
    assert results["voice default"].status == "ok"
    assert "the default voice" in results["voice default"].summary


def test_a_voice_without_its_transcript(tmp_path: Path, speech: Any) -> None:
    import_voice(tmp_path / "voices", "bob", *speech)
    (tmp_path / "voices" / "bob" / "reference.txt").unlink()
    other = by_name(check_voices(cfg_of(tmp_path, voices={"dir": "voices"}).voices))
    assert other["voice bob"].status == "warn"  # viewers who pick it hear the default
    assert "missing bob/reference.txt" in other["voice bob"].summary
    assert other["voice bob"].fix is not None
    assert "ishowtts voices add bob" in other["voice bob"].fix
    as_default = cfg_of(tmp_path, voices={"dir": "voices", "default": "bob"}).voices
    default = by_name(check_voices(as_default))
    assert default["voice bob"].status == "fail"  # every message would fail


def test_a_default_voice_that_does_not_exist(tmp_path: Path) -> None:
    voices = cfg_of(tmp_path, voices={"dir": "voices", "default": "carol"}).voices
    results = by_name(check_voices(voices))
    assert results["voice carol"].status == "fail"
    assert "no such voice" in results["voice carol"].summary


def test_a_voice_with_a_poor_clip_warns(tmp_path: Path, speech: Any) -> None:
    folder = tmp_path / "voices" / "faint"
    folder.mkdir(parents=True)
    sf.write(str(folder / "reference.flac"), speech[0] * 0.003, speech[1])
    (folder / "reference.txt").write_text(TRANSCRIPT, encoding="utf-8")
    results = by_name(check_voices(cfg_of(tmp_path, voices={"dir": "voices"}).voices))
    assert results["voice faint"].status == "warn"
    assert "too quiet" in results["voice faint"].summary


# -- audio output -------------------------------------------------------------------------


@pytest.mark.audio
def test_audio_device_found_and_missing(pulse_server: PulseServer) -> None:
    ok = check_audio(
        parse_config({"audio": {"device": pulse_server.device_name}}, Path.cwd()).audio
    )
    assert ok.status == "ok", ok.summary
    assert ok.summary.startswith(f"{pulse_server.device_name} [")
    assert " Hz" in ok.summary
    missing = check_audio(parse_config({"audio": {"device": "no-such-output"}}, Path.cwd()).audio)
    assert missing.status == "fail"
    assert "no output device name contains 'no-such-output'" in missing.summary
    assert "ishowtts devices" in missing.summary
    bad_index = check_audio(parse_config({"audio": {"device": 9999}}, Path.cwd()).audio)
    assert bad_index.status == "fail"
    assert "9999" in bad_index.summary


def test_browser_audio_only_needs_no_local_device(tmp_path: Path) -> None:
    # No sound server at all here: with speech in the overlay page that is not a problem.
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "audio": {"device": "no-such-output"},
                "web": {"browser_audio": "only"},
                "storage": {"dir": str(tmp_path / "state")},
            }
        ),
        encoding="utf-8",
    )
    results = by_name(run_checks(cfg, gpu_probe=lambda: H100, twitch_validate_url=None))
    assert results["audio output"].status == "skip"
    assert "browser_audio" in results["audio output"].summary
    cfg.write_text(cfg.read_text().replace("only", "also"), encoding="utf-8")
    results = by_name(run_checks(cfg, gpu_probe=lambda: H100, twitch_validate_url=None))
    assert results["audio output"].status == "fail"  # 'also' still plays on the device


# -- config -------------------------------------------------------------------------------


def test_config_file_states(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("audio:\n  volume: 0.5\n", encoding="utf-8")
    results = by_name(run_checks(good, gpu_probe=lambda: H100, twitch_validate_url=None))
    assert results["config"].status == "ok"
    assert str(good) in results["config"].summary

    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  volumme: 0.5\nengine:\n  name: f6\n", encoding="utf-8")
    results = by_name(run_checks(bad, gpu_probe=lambda: H100, twitch_validate_url=None))
    assert results["config"].status == "fail"
    assert "audio.volumme: unknown key" in results["config"].summary
    assert "engine.name" in results["config"].summary
    assert results["database"].status == "skip"  # nothing else can be judged meaningfully

    results = by_name(
        run_checks(tmp_path / "absent.yaml", gpu_probe=lambda: H100, twitch_validate_url=None)
    )
    assert results["config"].status == "fail"
    assert "config file not found" in results["config"].summary

    none_here = check_config(None, None, used_defaults=True)
    assert none_here.status == "warn"
    assert "built-in defaults" in none_here.summary


# -- Twitch -------------------------------------------------------------------------------


class TwitchValidateDouble:
    """Twitch's /oauth2/validate: 200 with the token's scopes, or 401."""

    def __init__(self, status: int, scopes: list[str]) -> None:
        self.status = status
        self.scopes = scopes
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/oauth2/validate"

    def __enter__(self) -> TwitchValidateDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                double.seen.append(self.headers.get("Authorization", ""))
                body = json.dumps(
                    {"client_id": CLIENT_ID, "login": "streamer", "scopes": double.scopes}
                    if double.status == 200
                    else {"status": 401, "message": "invalid access token"}
                ).encode()
                self.send_response(double.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def twitch_cfg(tmp_path: Path, source: str = "auto", **twitch: Any) -> Config:
    return cfg_of(
        tmp_path,
        chat={"source": source},
        twitch={"channel": "streamer", "client_id": CLIENT_ID, **twitch},
        storage={"dir": "state"},
    )


def sign_in(cfg: Config, scopes: tuple[str, ...] = SCOPES, client_id: str = CLIENT_ID) -> None:
    TokenStore(token_path(state_dir(cfg.storage))).write(
        StoredToken(client_id, "123", "streamer", "access-1", "refresh-1", scopes)
    )


def test_twitch_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISHOWTTS_TWITCH_CLIENT_ID", raising=False)
    plain = check_twitch(cfg_of(tmp_path), validate_url=None)
    assert plain.status == "skip"
    assert "terminal" in plain.summary
    terminal = check_twitch(cfg_of(tmp_path, chat={"source": "terminal"}), validate_url=None)
    assert terminal.status == "skip"
    insisted = check_twitch(cfg_of(tmp_path, chat={"source": "twitch"}), validate_url=None)
    assert insisted.status == "fail"
    assert "twitch.channel is not set" in insisted.summary
    no_client = cfg_of(tmp_path, chat={"source": "twitch"}, twitch={"channel": "streamer"})
    result = check_twitch(no_client, validate_url=None)
    assert result.status == "fail"
    assert "client id" in result.summary


def test_twitch_not_signed_in(tmp_path: Path) -> None:
    auto = check_twitch(twitch_cfg(tmp_path), validate_url=None)
    assert auto.status == "warn"  # auto falls back to the terminal
    assert "not signed in" in auto.summary
    assert auto.fix == "run `ishowtts login`"
    strict = check_twitch(twitch_cfg(tmp_path, "twitch"), validate_url=None)
    assert strict.status == "fail"


def test_twitch_token_file_damaged(tmp_path: Path) -> None:
    cfg = twitch_cfg(tmp_path, "twitch")
    path = token_path(state_dir(cfg.storage))
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    result = check_twitch(cfg, validate_url=None)
    assert result.status == "fail"
    assert "damaged" in result.summary


def test_twitch_signed_in_with_every_scope(tmp_path: Path) -> None:
    cfg = twitch_cfg(tmp_path, "twitch")
    sign_in(cfg)
    offline = check_twitch(cfg, validate_url=None)
    assert offline.status == "ok"
    assert offline.summary.startswith("signed in as streamer for #streamer, scopes ")
    with TwitchValidateDouble(200, list(SCOPES)) as twitch:
        online = check_twitch(cfg, validate_url=twitch.url)
    assert online.status == "ok"
    assert online.summary.endswith("Twitch accepts the token")
    assert twitch.seen == ["OAuth access-1"]
    with TwitchValidateDouble(401, []) as twitch:
        expired = check_twitch(cfg, validate_url=twitch.url)
    assert expired.status == "ok"
    assert "refreshes it when it starts" in expired.summary


def test_twitch_scopes_missing(tmp_path: Path) -> None:
    cfg = twitch_cfg(tmp_path, "twitch")
    sign_in(cfg, scopes=("user:read:chat",))
    partial = check_twitch(cfg, validate_url=None)
    assert partial.status == "warn"
    assert "user:write:chat" in partial.summary
    sign_in(cfg, scopes=("user:write:chat",))
    blind = check_twitch(cfg, validate_url=None)
    assert blind.status == "fail"
    assert "user:read:chat" in blind.summary
    assert "chat cannot be read" in blind.summary
    sign_in(cfg)
    with TwitchValidateDouble(200, ["user:write:chat"]) as twitch:
        revoked = check_twitch(cfg, validate_url=twitch.url)
    assert revoked.status == "fail"
    assert "no longer grants user:read:chat" in revoked.summary


def test_twitch_token_of_another_application(tmp_path: Path) -> None:
    cfg = twitch_cfg(tmp_path, "twitch")
    sign_in(cfg, client_id="someoneelse000000000")
    result = check_twitch(cfg, validate_url=None)
    assert result.status == "fail"
    assert "another client id" in result.summary


def test_twitch_unreachable_is_only_a_note(tmp_path: Path) -> None:
    cfg = twitch_cfg(tmp_path, "twitch")
    sign_in(cfg)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = check_twitch(cfg, validate_url=f"http://127.0.0.1:{port}/oauth2/validate")
    assert result.status == "ok"
    assert "could not be reached" in result.summary


# -- database -----------------------------------------------------------------------------


def test_database_will_be_created(tmp_path: Path) -> None:
    result = check_database(cfg_of(tmp_path, storage={"dir": "state/deeper"}))
    assert result.status == "ok"
    assert "will be created" in result.summary
    assert not (tmp_path / "state").exists()  # the doctor creates nothing


async def test_an_existing_database_is_checked(tmp_path: Path) -> None:
    from bot.state.settings import database_path
    from bot.state.store import MIGRATIONS, Store

    cfg = cfg_of(tmp_path, storage={"dir": "state"})
    (tmp_path / "state").mkdir()
    store = Store(database_path(cfg.storage))
    await store.open()
    await store.close()
    result = check_database(cfg)
    assert result.status == "ok", result.summary
    assert f"schema {len(MIGRATIONS)}, writable" in result.summary


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, storage={"database": "state.db"})
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    result = check_database(cfg)
    assert result.status == "fail"
    assert "not a usable SQLite database" in result.summary
    assert result.fix is not None
    assert "move the file away" in result.fix


def test_a_database_from_a_newer_version(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, storage={"database": "state.db"})
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("PRAGMA user_version = 99")
    result = check_database(cfg)
    assert result.status == "fail"
    assert "newer ishowtts" in result.summary


def test_a_file_where_the_state_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a folder", encoding="utf-8")
    result = check_database(cfg_of(tmp_path, storage={"dir": "state"}))
    assert result.status == "fail"
    assert "is a file, not a folder" in result.summary


def test_an_unwritable_folder(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
    else:
        # Root writes through permission bits; sysfs refuses new files even to root.
        folder = Path("/sys/ishowtts-doctor-test")
        if not Path("/sys").is_dir():
            pytest.skip("no /sys to test an unwritable folder as root")
    try:
        result = check_database(cfg_of(tmp_path, storage={"dir": str(folder)}))
    finally:
        if folder.parent == tmp_path:
            folder.chmod(0o700)
    assert result.status == "fail"
    assert "cannot create" in result.summary
    assert result.fix is not None
    assert "storage.dir" in result.fix


# -- web panel port -----------------------------------------------------------------------


def test_a_port_in_use_and_a_free_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        taken = check_port("127.0.0.1", port)
        assert taken.status == "fail"
        assert f"port {port} on 127.0.0.1 is taken" in taken.summary
        assert taken.fix is not None
        assert "web.port" in taken.fix
    free = check_port("127.0.0.1", port)
    assert free.status == "ok"
    assert free.summary == f"http://127.0.0.1:{port}/ is free"


def test_web_panel_settings(tmp_path: Path) -> None:
    from bot.setup.doctor import check_web

    assert check_web(cfg_of(tmp_path, web={"enabled": False})).status == "skip"
    assert check_web(cfg_of(tmp_path, web={"port": 0})).status == "ok"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert check_web(cfg_of(tmp_path, web={"port": port})).status == "fail"


# -- the whole report ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ready_config(tmp_path: Path, speech: Any, pulse_server: PulseServer) -> Path:
    import_voice(tmp_path / "voices", "alice", *speech)
    config = {
        "engine": {"name": "espeak"},
        "voices": {"dir": "voices", "default": "alice"},
        "audio": {"device": pulse_server.device_name},
        "chat": {"source": "terminal"},
        "storage": {"dir": "state"},
        "web": {"port": free_port()},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.audio
def test_a_ready_machine_passes_with_exit_status_0(ready_config: Path) -> None:
    out = io.StringIO()
    results = run_checks(ready_config, twitch_validate_url=None)
    assert not [r for r in results if r.status in ("fail", "warn")], results
    render(results, out, width=100)
    text = out.getvalue()
    assert text.rstrip().endswith("Ready to run: ./scripts/run.sh.")
    assert "  OK    voice alice" in text
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(ready_config), "doctor"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ready to run" in done.stdout


@pytest.mark.audio
def test_a_blocking_problem_makes_the_exit_status_non_zero(
    ready_config: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(ready_config.read_text(encoding="utf-8"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        data["web"]["port"] = listener.getsockname()[1]
        (tmp_path / "voices" / "alice" / "reference.txt").unlink()
        ready_config.write_text(yaml.safe_dump(data), encoding="utf-8")
        out = io.StringIO()
        status = doctor_command(ready_config, out=out)
    text = out.getvalue()
    assert status == 1
    assert "2 problems block running the bot" in text
    assert "FAIL  voice alice" in text
    assert "FAIL  web panel" in text
    assert "-> " in text  # each problem comes with what to do


def test_the_report_is_one_screen_wide() -> None:
    results = [
        CheckResult("GPU", "warn", "word " * 60, "do this " * 30),
        CheckResult("config", "ok", "config.yaml is valid"),
        CheckResult("Twitch", "skip", "not configured"),
    ]
    out = io.StringIO()
    render(results, out, width=80)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("  WARN  GPU     word")
    assert any(line.strip().startswith("-> do this") for line in lines)
    assert lines[-1] == "Ready to run: ./scripts/run.sh (1 warning above)."


def test_a_check_that_crashes_becomes_a_failed_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("chat:\n  source: terminal\nstorage:\n  dir: state\n", encoding="utf-8")
    code = (
        "import sys; sys.modules['sounddevice'] = None\n"  # as if it were not installed
        "from bot.cli import main\n"
        f"sys.exit(main(['--config', {str(config)!r}, 'doctor']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if "audio output" in x)
    assert "FAIL" in line
    assert "the check itself failed" in line
    assert "sounddevice" in line
    assert "FAIL  database" not in done.stdout  # the checks after it still ran
    assert "database" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
