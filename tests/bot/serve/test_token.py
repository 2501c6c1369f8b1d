"""The serve token: made once, kept 0600 in the state folder, shown by --print-token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.serve.token import ServeTokenError, load_or_create_serve_token


def test_print_token_makes_it_once_mode_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISHOWTTS_SERVE_TOKEN", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"dir": str(tmp_path / "state")}}))
    assert main(["--config", str(config), "serve", "--print-token"]) == 0
    first = capsys.readouterr().out.strip()
    path = tmp_path / "state" / "serve-token"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32
    assert main(["--config", str(config), "serve", "--print-token"]) == 0
    assert capsys.readouterr().out.strip() == first  # kept, not remade


def test_a_readable_token_file_is_tightened_and_a_bad_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "serve-token"
    tmp_path.chmod(0o700)
    path.write_text("a" * 40 + "\n")
    path.chmod(0o644)
    token, created, where = load_or_create_serve_token(tmp_path, env="TEST_NO_SUCH_VAR")
    assert (token, created, where) == ("a" * 40, False, str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("short\n")
    token, created, _ = load_or_create_serve_token(tmp_path, env="TEST_NO_SUCH_VAR")
    assert created
    assert token != "short"


def test_the_environment_wins_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SERVE_TOKEN", "e" * 20)
    assert load_or_create_serve_token(tmp_path, env="TEST_SERVE_TOKEN") == (
        "e" * 20,
        False,
        "$TEST_SERVE_TOKEN",
    )
    assert not (tmp_path / "serve-token").exists()
    monkeypatch.setenv("TEST_SERVE_TOKEN", "bad token\n")
    with pytest.raises(ServeTokenError, match="not a usable token"):
        load_or_create_serve_token(tmp_path, env="TEST_SERVE_TOKEN")


def test_serve_refuses_a_taken_port_and_a_remote_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "engine": {"name": "espeak"},
                    "storage": {"dir": str(tmp_path / "state")},
                    "serve": {"port": port},
                }
            )
        )
        assert main(["--config", str(config), "serve"]) == 2
    assert any(f"cannot listen on 127.0.0.1:{port}" in r.getMessage() for r in caplog.records)
    config.write_text(yaml.safe_dump({"engine": {"name": "remote"}}))
    assert main(["--config", str(config), "serve"]) == 2
