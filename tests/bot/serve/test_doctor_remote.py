"""``ishowtts doctor`` with ``engine.name: remote``: the voice server, asked for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.setup.doctor import CheckResult, check_remote
from tests.bot.serve.harness import ServeProcess, free_port, launch_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = launch_serve(tmp_path_factory.mktemp("serve-doctor"), {"name": "espeak"})
    try:
        yield proc
    finally:
        proc.stop()


def checks(url: str, state: Path, **remote: object) -> dict[str, CheckResult]:
    cfg = parse_config(
        {
            "engine": {"name": "remote", "remote": {"url": url, **remote}},
            "storage": {"dir": str(state)},
        },
        state,
    )
    return {r.name: r for r in check_remote(cfg, timeout_s=3)}


def test_a_working_server(server: ServeProcess) -> None:
    found = checks(server.url, server.state_dir)
    assert [r.status for r in found.values()] == ["ok", "ok", "ok", "ok"]
    assert "espeak engine" in found["voice server"].summary
    assert "1 usable: default" in found["voice server voices"].summary


def test_a_wrong_token(
    server: ServeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISHOWTTS_SERVE_TOKEN", "w" * 30)
    found = checks(server.url, tmp_path)
    token = found["voice server token"]
    assert token.status == "fail"
    assert "refuses the token from $ISHOWTTS_SERVE_TOKEN" in token.summary
    assert token.fix is not None
    assert "--print-token" in token.fix


def test_no_token(server: ServeProcess, tmp_path: Path) -> None:
    found = checks(server.url, tmp_path, token_env="TEST_DOCTOR_NO_TOKEN")
    assert found["voice server token"].status == "fail"
    assert "no token found" in found["voice server token"].summary


def test_nothing_listening(tmp_path: Path) -> None:
    found = checks(f"http://127.0.0.1:{free_port()}", tmp_path)
    assert found["voice server"].status == "fail"
    assert "does not answer" in found["voice server"].summary
    assert found["voice server"].fix is not None
    assert "ishowtts serve" in found["voice server"].fix


def test_the_gpu_and_f5_weights_are_not_this_pcs_business(tmp_path: Path) -> None:
    from bot.setup.doctor import GpuProbe, check_gpu, check_weights

    cfg = parse_config({"engine": {"name": "remote"}}, tmp_path)
    no_gpu = GpuProbe(torch_version="2.0", cuda_build=None, available=False)
    assert check_gpu(cfg.engine, no_gpu).status == "skip"
    assert check_weights(cfg.engine).status == "skip"
