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

from bot.chat.announcements import AnnouncementsConfig
from bot.chat.settings import (
    ChatConfig,
    CommandsConfig,
    FiltersConfig,
    PronunciationConfig,
    RaidConfig,
    TriggersConfig,
    TtsConfig,
)
from bot.chat.sounds import SoundsConfig
from bot.sources.twitch.settings import TwitchConfig
from bot.sources.youtube.settings import YouTubeConfig
from bot.speech.settings import AudioConfig, QueueConfig
from bot.state.settings import StorageConfig
from bot.web.settings import WebConfig
from engine.config import EngineConfig, Section, ServeConfig, VoicesConfig


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
    youtube: YouTubeConfig = YouTubeConfig()
    storage: StorageConfig = StorageConfig()
    commands: CommandsConfig = CommandsConfig()
    filters: FiltersConfig = FiltersConfig()
    triggers: TriggersConfig = TriggersConfig()
    tts: TtsConfig = TtsConfig()
    raid: RaidConfig = RaidConfig()
    pronunciation: PronunciationConfig = PronunciationConfig()
    announcements: AnnouncementsConfig = AnnouncementsConfig()
    sounds: SoundsConfig = SoundsConfig()
    web: WebConfig = WebConfig()
    serve: ServeConfig = ServeConfig()

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


def _key_word(item: object) -> str:
    """One part of a key path, safe to print: odd keys (line breaks, escapes) are quoted."""
    text = str(item)
    if isinstance(item, str) and text.isprintable() and text.strip() == text and text:
        return text if len(text) <= 40 else text[:37] + "..."
    shown = repr(item)
    return shown if len(shown) <= 40 else shown[:37] + "..."


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
            parts.append(_key_word(item))
            ann = ann.model_fields[str(item)].annotation
        elif get_origin(ann) is dict:
            parts.append(_key_word(item))
            ann = get_args(ann)[1]
        elif get_origin(ann) in (tuple, list):
            parts.append(f"[{item}]" if isinstance(item, int) else _key_word(item))
            ann = get_args(ann)[0] if get_args(ann) else None
        elif get_origin(ann) in (Union, types.UnionType):
            ann = None  # this item is the member tag pydantic tried; not a key
        else:
            parts.append(f"[{item}]" if isinstance(item, int) else _key_word(item))
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
    try:
        text = short.repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit, a cycle
        text = f"a {type(value).__name__} too large to show"
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
        raise ConfigError(
            f"{where}: the top level must be a mapping of sections, got {_shown(data)}"
        )
    try:
        cfg = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        lines = _describe_all(exc.errors())
        raise ConfigError(f"{where} has problems:\n  " + "\n  ".join(lines)) from None
    return cfg.model_copy(update={"source_path": source})


MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few kilobytes; anything past this is not one (and would be slow to parse)."""
_MAX_DIGITS = 30
"""No key takes a number this long; longer ones are shown by their length, never converted."""


class _Opaque:
    """A YAML value no config key accepts (a date, binary data, a set, a base-60 number...).

    Validation refuses it like any wrong type, and its repr says in YAML's own words what was
    written, so the error line reads ``got 1:30 (...)`` instead of a Python object.
    """

    __slots__ = ("_shown",)

    def __init__(self, shown: str) -> None:
        self._shown = shown

    def __repr__(self) -> str:
        return self._shown


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the surprises of YAML 1.1 turned into clear errors.

    * integers of thousands of digits are not converted (Python refuses past 4,300 digits,
      and no key takes one): they become an opaque value "a number with N digits";
    * base-60 numbers (``1:30`` is 90 in YAML 1.1), timestamps, ``!!binary``, ``!!set``,
      ``!!omap`` and ``!!pairs`` become opaque values that every key refuses, by name;
    * a key written twice in one mapping is an error with both lines (PyYAML keeps the last).
    """

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        text = str(self.construct_scalar(node)).replace("_", "")
        if ":" in text:
            return _Opaque(f"{node.value} (YAML reads this as a base-60 number; quote it)")
        digits = len(text.lstrip("+-"))
        if digits > _MAX_DIGITS:
            return _Opaque(f"a number with {digits} digits")
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        text = str(self.construct_scalar(node))
        if ":" in text:
            return _Opaque(f"{node.value} (YAML reads this as a base-60 number; quote it)")
        if len(text) > _MAX_DIGITS * 10:
            return _Opaque(f"a number with {len(text)} digits")
        return super().construct_yaml_float(node)

    def construct_opaque(self, node: yaml.Node) -> Any:
        kind = node.tag.rsplit(":", 1)[-1]
        if kind == "timestamp":
            return _Opaque(f"the date/time {node.value} (quote it to make it text)")
        words = {"binary": "binary data", "set": "a set"}.get(kind, f"an ordered {kind} list")
        return _Opaque(f"{words} (!!{kind})")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"the key {key!r} appears twice in one section (first on line {first})",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _Loader.construct_opaque)


def read_yaml(text: str) -> Any:
    """Parse config YAML with :class:`_Loader`.

    Raises:
        yaml.YAMLError: The text is not YAML (or repeats a key); RecursionError when nested
            too deeply.
    """
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds no objects


def load_config(path: Path) -> Config:
    """Read and validate a config file; a missing default file means all defaults.

    Raises:
        ConfigError: When the file is unreadable, not YAML, or has bad values.
    """
    path = path.expanduser()
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: the config file is larger than {MAX_CONFIG_BYTES // 1024} KiB;"
                " is it the right file?"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        data = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor PyYAML does not wrap
        raise ConfigError(f"{path}: not valid YAML: {str(exc)[:200]}") from None
    return parse_config(data, path.resolve().parent, path.resolve())
