"""Weight resolution: the doctor's answer (locate) and the engine's (resolve) read one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.base import EngineError
from engine.config import F5Config
from engine.weights import hub_offline, locate_weights, resolve_weights, weight_locations


def test_located_local_files_are_the_ones_resolved(tiny_f5: dict[str, Any]) -> None:
    f5 = F5Config(**tiny_f5)
    located = locate_weights(f5)
    assert [w.state for w in located] == ["local"] * 4
    assert [w.key for w in located] == [k for k, _ in weight_locations(f5)]
    files = resolve_weights(f5)
    assert {Path(w.detail) for w in located} == {
        files.checkpoint,
        files.vocab,
        files.vocoder / "config.yaml",
        files.vocoder / "pytorch_model.bin",
    }


def test_missing_files_agree_between_locate_and_resolve(tmp_path: Path) -> None:
    f5 = F5Config(
        checkpoint=str(tmp_path / "model.safetensors"),
        vocab=str(tmp_path / "vocab.txt"),
        vocoder=str(tmp_path / "vocos"),
    )
    missing = {w.key for w in locate_weights(f5) if w.state == "missing"}
    assert missing == {"engine.f5.checkpoint", "engine.f5.vocab", "engine.f5.vocoder"}
    with pytest.raises(EngineError) as info:
        resolve_weights(f5)
    for key in missing:
        assert f"{key}: " in str(info.value)


def test_offline_switch_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert hub_offline()


def test_offline_hub_files_are_missing_without_asking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    located = locate_weights(F5Config(), endpoint="http://127.0.0.1:9", timeout_s=0.1)
    assert [w.state for w in located] == ["missing"] * 4
    assert all("HF_HUB_OFFLINE" in w.detail for w in located)
