"""The README's configuration reference names every key of the chat package's sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from bot.chat.commands import docs
from bot.chat.settings import (
    FiltersConfig,
    PronunciationConfig,
    RaidConfig,
    RaidStep,
    TriggersConfig,
    TtsConfig,
)
from bot.config import parse_config

README = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")


def keys(prefix: str, model: type[BaseModel]) -> list[str]:
    """Every leaf key under ``prefix`` (nested sections followed, lists of sections as [N])."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += keys(key, kind)
        else:
            out.append(key)
    return out


SECTIONS = [
    *keys("triggers", TriggersConfig),
    *keys("tts", TtsConfig),
    *keys("filters", FiltersConfig),
    *keys("raid", RaidConfig),
    *keys("raid.steps[N]", RaidStep),
    *keys("pronunciation", PronunciationConfig),
]


@pytest.mark.parametrize("key", SECTIONS)
def test_every_key_has_a_row(key: str) -> None:
    assert f"| `{key}` |" in README, f"README's configuration reference lacks {key}"


def test_the_commands_that_are_off_by_default_have_their_table() -> None:
    assert docs.command_table(enabled=False) in README


def test_the_shipped_examples_of_these_sections_are_valid(tmp_path: Path) -> None:
    """Uncommenting config.yaml's tts, raid and pronunciation examples gives a valid config."""
    lines = (Path(__file__).parents[3] / "config.yaml").read_text(encoding="utf-8").splitlines()
    wanted, taking = [], False
    for line in lines:
        if line.startswith(("# tts:", "# raid:", "# pronunciation:")):
            taking = True
        elif not line.startswith("#   "):  # the end of an example block
            taking = False
        if taking:
            wanted.append(line[2:])
    data = yaml.safe_load("\n".join(wanted))
    assert set(data) == {"tts", "raid", "pronunciation"}
    cfg = parse_config(data, tmp_path)
    assert cfg.tts.parts.enabled
    assert cfg.tts.new_viewers.mode == "stable"
    assert cfg.raid.enabled
    assert len(cfg.raid.steps) == 2
    assert cfg.pronunciation.patterns[0].match == r"\bx+d+\b"
