from pathlib import Path

import pytest

from bot.config import ConfigError, load_config, parse_config
from engine.config import DEFAULT_CHECKPOINT
from tests.support import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_public_contract(tmp_path: Path) -> None:
    cfg = parse_config({}, tmp_path)
    assert cfg.engine.name == "auto"
    assert cfg.engine.device == "auto"
    assert cfg.engine.f5.model == "F5TTS_v1_Base"
    assert cfg.engine.f5.checkpoint == DEFAULT_CHECKPOINT
    assert cfg.engine.f5.vocoder == "charactr/vocos-mel-24khz"
    assert cfg.engine.f5.nfe_step == 16
    assert cfg.engine.f5.precision == "auto"
    assert cfg.voices.dir == tmp_path / "voices"
    assert cfg.audio.device is None
    assert cfg.audio.volume == 1.0
    assert cfg.chat.source == "auto"


def test_the_shipped_config_yaml_is_valid() -> None:
    cfg = load_config(REPO / "config.yaml")
    assert cfg.engine.f5.nfe_step == 16


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "voc").mkdir()
    path = write(
        tmp_path / "sub",
        "voices: {dir: myvoices}\n"
        "engine: {f5: {checkpoint: w/model.safetensors, vocab: hf://a/b/vocab.txt,"
        " vocoder: voc}}\n",
    )
    cfg = load_config(path)
    assert cfg.voices.dir == tmp_path / "sub" / "myvoices"
    assert cfg.engine.f5.checkpoint == str(tmp_path / "sub" / "w" / "model.safetensors")
    assert cfg.engine.f5.vocab == "hf://a/b/vocab.txt"
    assert cfg.engine.f5.vocoder == str(tmp_path / "sub" / "voc")


def test_a_hub_repo_id_stays_a_repo_id(tmp_path: Path) -> None:
    cfg = parse_config({"engine": {"f5": {"vocoder": "someone/vocos"}}}, tmp_path)
    assert cfg.engine.f5.vocoder == "someone/vocos"


def test_model_may_be_a_mapping_of_dit_arguments(tmp_path: Path) -> None:
    cfg = parse_config({"engine": {"f5": {"model": {"dim": 64, "depth": 2}}}}, tmp_path)
    assert cfg.engine.f5.model == {"dim": 64, "depth": 2}


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "engine: {name: tacotron}",
            ["engine.name", "'tacotron'", "'auto', 'f5', 'espeak' or 'remote'"],
        ),
        ("engine: {device: tpu}", ["engine.device", "'tpu'", "'cuda'"]),
        ("engine: {f5: {nfe_step: abc}}", ["engine.f5.nfe_step", "'abc'", "integer"]),
        ("engine: {f5: {nfe_step: 1}}", ["engine.f5.nfe_step", "greater than or equal to 2"]),
        ("engine: {f5: {precision: bf16}}", ["engine.f5.precision", "'fp16'"]),
        ("engine: {f5: {checkpoint: 'hf://only'}}", ["engine.f5.checkpoint", "hf://OWNER/REPO"]),
        ("audio: {volume: 3}", ["audio.volume", "3", "less than or equal to 1"]),
        ("voices: {default: '../etc'}", ["voices.default", "'../etc'", "letters, digits"]),
        ("chat: {source: irc}", ["chat.source", "'irc'"]),
        ("audoi: {volume: 1}", ["audoi", "unknown key"]),
        ("engine: {f5: {nfe: 8}}", ["engine.f5.nfe", "unknown key"]),
    ],
)
def test_bad_values_name_the_key_path_value_and_what_is_allowed(
    tmp_path: Path, yaml_text: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, yaml_text))
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert "Traceback" not in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "engine: {name: x, device: y}\naudio: {volume: -1}\n"))
    message = str(info.value)
    assert "engine.name" in message
    assert "engine.device" in message
    assert "audio.volume" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("engine: [1, 2", "not valid YAML at line"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_broken_files_get_a_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).engine.name == "auto"


def test_client_id_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISHOWTTS_TWITCH_CLIENT_ID", "abc123")
    assert parse_config({}, tmp_path).twitch.client_id == "abc123"
