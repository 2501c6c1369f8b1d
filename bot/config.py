"""``config.yaml`` parsed once into validated, typed, immutable objects.

Each package owns the sections it reads (``engine.config``, ``bot.chat.settings``,
``bot.speech.settings``, ...); this module composes them into one :class:`Config`, loads the
file and turns every validation failure into one line per bad key: its path, the value found
and what is allowed. Every section forbids unknown keys, so a typo stops start-up instead of
being silently ignored. Relative paths are resolved against the config file's folder, so
``--config`` works from anywhere.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError

from bot.chat.settings import (
    ChatConfig,
    CommandsConfig,
    FiltersConfig,
    TriggersConfig,
    TtsConfig,
)
from bot.sources.twitch.settings import TwitchConfig
from bot.speech.settings import AudioConfig, QueueConfig
from bot.state.settings import StorageConfig
from bot.web.settings import WebConfig
from engine.config import EngineConfig, Section, VoicesConfig


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` is a message meant for the user."""


class Config(Section):
    """The whole configuration."""

    engine: EngineConfig = EngineConfig()
    voices: VoicesConfig = VoicesConfig()
    audio: AudioConfig = AudioConfig()
    chat: ChatConfig = ChatConfig()
    queue: QueueConfig = QueueConfig()
    twitch: TwitchConfig = TwitchConfig()
    storage: StorageConfig = StorageConfig()
    commands: CommandsConfig = CommandsConfig()
    filters: FiltersConfig = FiltersConfig()
    triggers: TriggersConfig = TriggersConfig()
    tts: TtsConfig = TtsConfig()
    web: WebConfig = WebConfig()

    source_path: Path | None = Field(default=None, exclude=True)


_PLAIN_MESSAGES: dict[str, str] = {
    "model_type": "should be a section: indented `key: value` lines",
    "model_attributes_type": "should be a section: indented `key: value` lines",
    "dict_type": "should be a mapping: indented `key: value` lines",
    "tuple_type": "should be a list, e.g. [a, b]",
    "list_type": "should be a list, e.g. [a, b]",
    "path_type": "should be a path (text)",
}
"""pydantic messages that name Python types, in the words of a YAML file."""
_MAX_SHOWN = 80


def _key_path(loc: tuple[int | str, ...]) -> str:
    """The config key path of an error location, without pydantic's union member tags.

    For a key that accepts several types (``audio.device``: name or index) pydantic adds the
    type it tried to the location (``audio.device.str``); walking the models tells keys from
    such tags, so a voice that happens to be named ``str`` keeps its name.
    """
    parts: list[str] = []
    ann: Any = Config
    tag_next = False
    for item in loc:
        if tag_next:
            tag_next = False
            ann = None
            continue
        while get_origin(ann) in (Union, types.UnionType):
            members = [a for a in get_args(ann) if a is not type(None)]
            if len(members) > 1:
                break
            ann = members[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel) and item in ann.model_fields:
            parts.append(str(item))
            ann = ann.model_fields[str(item)].annotation
        elif get_origin(ann) is dict:
            parts.append(str(item))
            ann = get_args(ann)[1]
        elif get_origin(ann) in (tuple, list):
            parts.append(f"[{item}]" if isinstance(item, int) else str(item))
            ann = get_args(ann)[0] if get_args(ann) else None
        elif get_origin(ann) in (Union, types.UnionType):
            ann = None  # this item is the member tag pydantic tried; not a key
        else:
            parts.append(f"[{item}]" if isinstance(item, int) else str(item))
            ann = None
        if get_origin(ann) in (Union, types.UnionType):
            members = [a for a in get_args(ann) if a is not type(None)]
            tag_next = len(members) > 1
    return ".".join(parts).replace(".[", "[")


def _message(error: Any) -> str:
    kind = error["type"]
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of:")
    msg = msg.replace("Input should be", "should be")
    return f"{msg[0].lower()}{msg[1:]}" if msg else ""


def _shown(value: Any) -> str:
    """A short repr: YAML anchors can make a small file hold a huge value (billion laughs)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 5
    short.maxstring = short.maxother = _MAX_SHOWN
    text = short.repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _describe_all(errors: list[Any]) -> list[str]:
    """One line per bad key: its path, the value found and what is allowed.

    A key that accepts several types fails once per type; those failures become one line
    ("should be a valid string or a valid integer").
    """
    messages: dict[str, list[str]] = {}  # in the order pydantic reported them
    values: dict[str, Any] = {}
    unknown: set[str] = set()
    for error in errors:
        path = _key_path(tuple(error["loc"])) or "config"
        found = messages.setdefault(path, [])
        if error["type"] == "extra_forbidden":
            unknown.add(path)
            continue
        values.setdefault(path, error.get("input"))
        message = _message(error)
        if message and message not in found:
            found.append(message)
    lines: list[str] = []
    for path, found in messages.items():
        if path in unknown:
            lines.append(
                f"{path}: unknown key (check the spelling; see the README's config reference)"
            )
            continue
        said = " or ".join([found[0], *(m.removeprefix("should be ") for m in found[1:])])
        lines.append(f"{path}: got {_shown(values[path])}" + (f"; {said}" if said else ""))
    return lines


def parse_config(data: Any, base_dir: Path, source: Path | None = None) -> Config:
    """Validate already-loaded YAML data.

    Args:
        data: The YAML document (None for an empty file).
        base_dir: Folder that relative paths are resolved against.
        source: File the data came from, for messages.

    Raises:
        ConfigError: Naming every bad key path, its value and what is allowed.
    """
    where = str(source) if source else "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections, got {data!r}")
    try:
        cfg = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        lines = _describe_all(exc.errors())
        raise ConfigError(f"{where} has problems:\n  " + "\n  ".join(lines)) from None
    return cfg.model_copy(update={"source_path": source})


def load_config(path: Path) -> Config:
    """Read and validate a config file; a missing default file means all defaults.

    Raises:
        ConfigError: When the file is unreadable, not YAML, or has bad values.
    """
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    return parse_config(data, path.resolve().parent, path.resolve())
