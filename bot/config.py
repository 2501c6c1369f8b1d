"""``config.yaml`` parsed once into validated, typed, immutable objects.

Every section is a pydantic model that forbids unknown keys, so a typo stops start-up with the
key path, the bad value and what is allowed, instead of being silently ignored. Relative paths
in a config file are resolved against that file's folder, so ``--config`` works from anywhere.
"""

from __future__ import annotations

import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import AfterValidator

DEFAULT_CHECKPOINT = "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
DEFAULT_VOCAB = "hf://SWivid/F5-TTS/F5TTS_v1_Base/vocab.txt"
DEFAULT_VOCODER = "charactr/vocos-mel-24khz"
BUILTIN_VOICE = "default"
VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` is a message meant for the user."""


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


def _resolve_location(value: str, info: ValidationInfo) -> str:
    """Keep ``hf://`` URLs; turn anything else into an absolute local path."""
    if value.startswith("hf://"):
        if len(value.removeprefix("hf://").split("/")) < 3:
            raise ValueError("an hf:// URL must look like hf://OWNER/REPO/path/to/file")
        return value
    return str(_resolve_path(Path(value), info))


def _resolve_vocoder(value: str, info: ValidationInfo) -> str:
    """A hub repo id (``owner/name``) stays as is unless a local folder of that name exists."""
    local = Path(value).expanduser()
    if not local.is_absolute():
        local = _base_dir(info) / local
    if _HUB_REPO_RE.match(value) and not local.exists() and not value.startswith("."):
        return value
    return str(local.resolve())


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
Location = Annotated[str, AfterValidator(_resolve_location)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _fill_sections(cls, data: Any) -> Any:
        """Validate absent sub-sections from {} so their paths resolve against the config file."""
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                ann = info.annotation
                if name not in data and isinstance(ann, type) and issubclass(ann, _Section):
                    data = {**data, name: {}}
        return data


class F5Config(_Section):
    """F5-TTS weights and sampling settings (``engine.f5``)."""

    model: str | dict[str, Any] = Field(
        default="F5TTS_v1_Base",
        description="An f5-tts model config name, or a mapping of DiT arguments.",
    )
    checkpoint: Location = DEFAULT_CHECKPOINT
    vocab: Location = DEFAULT_VOCAB
    vocoder: str = DEFAULT_VOCODER
    nfe_step: int = Field(default=16, ge=2, le=128)
    precision: Literal["auto", "fp16", "fp32"] = "auto"
    cfg_strength: float = Field(default=2.0, ge=0.0, le=10.0)
    sway_sampling_coef: float = Field(default=-1.0, ge=-2.0, le=2.0)
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    max_chunk_chars: int = Field(default=160, ge=20, le=1000)
    seed: int | None = Field(default=None, ge=0)
    fast: bool = Field(
        default=True, description="use the project's accelerated sampler on CUDA (issue 5)"
    )

    @field_validator("vocoder")
    @classmethod
    def _vocoder(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_vocoder(value, info)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_]+", value):
            raise ValueError("must be an f5-tts model config name such as F5TTS_v1_Base")
        return value


class EspeakVoiceConfig(_Section):
    """One bot voice's eSpeak NG settings (``engine.espeak.voices.<name>``).

    Unset keys keep what the automatic mapping gives that name.
    """

    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+\-]{1,40}$")
    rate: int | None = Field(default=None, ge=80, le=450, description="words per minute")
    pitch: int | None = Field(default=None, ge=0, le=99)


class EspeakConfig(_Section):
    """eSpeak NG fallback engine settings (``engine.espeak``)."""

    voice: str = Field(default="en-us+klatt3", pattern=r"^[A-Za-z0-9_+\-]{1,40}$")
    rate: int = Field(default=175, ge=80, le=450, description="words per minute")
    pitch: int = Field(default=50, ge=0, le=99)
    voices: dict[str, EspeakVoiceConfig] = Field(
        default_factory=dict, description="per-voice settings, keyed by bot voice name"
    )

    @field_validator("voices")
    @classmethod
    def _voice_names(cls, value: dict[str, EspeakVoiceConfig]) -> dict[str, EspeakVoiceConfig]:
        bad = [name for name in value if not VOICE_NAME_RE.match(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a voice name (1-32 letters, digits, '-' or '_')")
        return {name.lower(): settings for name, settings in value.items()}


class EngineConfig(_Section):
    """Which TTS engine runs, and where (``engine``)."""

    name: Literal["auto", "f5", "espeak"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    f5: F5Config = F5Config()
    espeak: EspeakConfig = EspeakConfig()


class VoicesConfig(_Section):
    """Where voices live and which one speaks by default (``voices``)."""

    dir: ConfigPath = Path("voices")
    default: str = BUILTIN_VOICE

    @field_validator("default")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VOICE_NAME_RE.match(value):
            raise ValueError("must be 1-32 letters, digits, '-' or '_'")
        return value


class AudioConfig(_Section):
    """Output device and loudness (``audio``)."""

    device: str | int | None = None
    volume: float = Field(default=1.0, ge=0.0, le=1.0)
    gap_ms: int = Field(default=250, ge=0, le=10_000, description="pause between messages")
    block_ms: int = Field(default=20, ge=5, le=200)


class QueueConfig(_Section):
    """The speech queue's bounds and policies (``queue``)."""

    max_size: int = Field(default=30, ge=1, le=10_000)
    overflow: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    per_user_limit: int = Field(default=3, ge=1, le=1000, description="pending messages per user")
    paid_first: bool = True


class ChatConfig(_Section):
    """Where chat comes from (``chat``)."""

    source: Literal["auto", "terminal", "twitch"] = "auto"
    max_length: int = Field(default=500, ge=10, le=5000)


class TwitchConfig(_Section):
    """Twitch connection (``twitch``); the client id may come from the environment."""

    channel: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{2,25}$")
    client_id: str | None = None
    rewards: tuple[str, ...] = ()
    min_bits: int = Field(default=100, ge=1)
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="first wait before rebuilding a lost connection"
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, le=600, description="longest wait between reconnection attempts"
    )

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        return value or os.environ.get("ISHOWTTS_TWITCH_CLIENT_ID") or None


class StorageConfig(_Section):
    """Local state: database, tokens (``storage``); defaults to the user's state folder."""

    dir: ConfigPath | None = None
    database: ConfigPath | None = Field(
        default=None, description="SQLite file (default: ishowtts.db in storage.dir)"
    )
    history_limit: int = Field(
        default=1000, ge=0, le=1_000_000, description="recent messages kept in the database"
    )


def state_dir(storage: StorageConfig) -> Path:
    """The folder for local state (database, tokens): ``storage.dir``, else the user's state folder.

    The default lives outside any repository (``~/.local/state/ishowtts`` on Linux), so tokens and
    the database are never committed by accident.
    """
    if storage.dir is not None:
        return storage.dir
    import platformdirs

    return Path(platformdirs.user_state_dir("ishowtts", appauthor=False))


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (so nothing else on the network can connect)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(_Section):
    """The OBS overlay and control panel server (``web``); loopback only unless allowed."""

    enabled: bool = True
    allow_remote: bool = Field(
        default=False, description="allow web.host to be reachable from other machines"
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port")
    history: int = Field(default=50, ge=0, le=1000, description="recent messages on the panel")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_remote", False) and not _is_loopback(value):
            raise ValueError(
                "is reachable from other machines; use 127.0.0.1, or set "
                "web.allow_remote: true if you really want the panel on the network"
            )
        return value


RoleName = Literal["everyone", "subscriber", "vip", "moderator", "broadcaster"]
"""A chat role as written in the config, lowest to highest."""

COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,25}$")
COMMAND_KEYS: tuple[str, ...] = (
    "voice",
    "voices",
    "tts",
    "mute",
    "unmute",
    "skip",
    "clear",
    "pause",
    "resume",
    "volume",
    "ttsoff",
    "ttson",
    "setvoice",
)
"""The chat commands the bot knows, by their key under ``commands``."""


class CommandSpec(_Section):
    """One chat command: what viewers type and who may use it (``commands.<key>``)."""

    name: str | None = Field(default=None, description="what follows the prefix (default: the key)")
    aliases: tuple[str, ...] = ()
    min_role: RoleName | None = Field(
        default=None, description="lowest role allowed (default: the command's own)"
    )
    enabled: bool = True
    cooldown_s: float | None = Field(
        default=None,
        ge=0.0,
        le=86_400.0,
        description="seconds between two uses in the channel (default: 30 for voices, else 0)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not COMMAND_NAME_RE.match(value):
            raise ValueError("must be 1-25 letters, digits or '_' (without the prefix)")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(v.lower() for v in value)
        for alias in out:
            if not COMMAND_NAME_RE.match(alias):
                raise ValueError(f"alias {alias!r} must be 1-25 letters, digits or '_'")
        return out


class CommandsConfig(_Section):
    """Chat commands (``commands``): prefix, replies, and one entry per command."""

    enabled: bool = True
    prefix: str = Field(default="!", pattern=r"^[^\s]{1,5}$")
    acknowledge: bool = Field(default=True, description="confirm moderator actions in chat")
    reply_denied: bool = Field(default=False, description="tell users a command is not theirs")
    reply_max_chars: int = Field(default=500, ge=50, le=10_000)
    voice: CommandSpec = CommandSpec()
    voices: CommandSpec = CommandSpec()
    tts: CommandSpec = CommandSpec()
    mute: CommandSpec = CommandSpec()
    unmute: CommandSpec = CommandSpec()
    skip: CommandSpec = CommandSpec()
    clear: CommandSpec = CommandSpec()
    pause: CommandSpec = CommandSpec()
    resume: CommandSpec = CommandSpec()
    volume: CommandSpec = CommandSpec()
    ttsoff: CommandSpec = CommandSpec()
    ttson: CommandSpec = CommandSpec()
    setvoice: CommandSpec = CommandSpec()

    def spec(self, key: str) -> CommandSpec:
        """The entry of the command ``key`` (one of COMMAND_KEYS)."""
        spec = getattr(self, key)
        assert isinstance(spec, CommandSpec)
        return spec

    @model_validator(mode="after")
    def _unique_names(self) -> CommandsConfig:
        seen: dict[str, str] = {}
        for key in COMMAND_KEYS:
            spec = self.spec(key)
            if not spec.enabled:
                continue
            for word in (spec.name or key, *spec.aliases):
                if word in seen and seen[word] != key:
                    raise ValueError(f"{word!r} is used by both commands.{seen[word]} and {key}")
                seen[word] = key
        return self


class LinksFilter(_Section):
    """URLs in chat (``filters.links``): say a word instead, remove them, or drop the message."""

    action: Literal["replace", "remove", "drop", "keep"] = "replace"
    word: str = Field(default="link", max_length=40)


class EmotesFilter(_Section):
    """Emote-like words left in the text (``filters.emotes``); platform emotes are already gone."""

    words: tuple[str, ...] = Field(default=(), description="exact words to remove")
    pattern: str | None = Field(default=None, description="regex: whole words to remove")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RepeatsFilter(_Section):
    """Runs of the same character or word (``filters.repeats``); 0 switches a limit off."""

    max_chars: int = Field(default=3, ge=0, le=100)
    max_words: int = Field(default=2, ge=0, le=100)


class ZalgoFilter(_Section):
    """Stacked combining marks (``filters.zalgo``); control characters always go."""

    max_marks: int = Field(default=2, ge=0, le=10, description="combining marks per letter")


class EmojiFilter(_Section):
    """Emoji (``filters.emoji``): drop them, keep them, or say their names."""

    action: Literal["drop", "keep", "describe"] = "drop"
    max_described: int = Field(default=3, ge=0, le=50)


class BannedWordsFilter(_Section):
    """Words nobody wants read out (``filters.banned_words``); ``*`` matches any ending."""

    words: tuple[str, ...] = ()
    action: Literal["bleep", "drop"] = "bleep"
    bleep: str = Field(default="bleep", max_length=40)


DEFAULT_IGNORED_USERS: tuple[str, ...] = (
    "nightbot",
    "streamelements",
    "streamlabs",
    "moobot",
    "fossabot",
    "wizebot",
    "soundalerts",
    "sery_bot",
)


class IgnoreFilter(_Section):
    """Who and what is never read (``filters.ignore``): other bots, other bots' commands."""

    users: tuple[str, ...] = DEFAULT_IGNORED_USERS
    prefixes: tuple[str, ...] = ("!",)

    @field_validator("users")
    @classmethod
    def _users(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower().lstrip("@") for v in value)


class LengthFilter(_Section):
    """Long messages (``filters.length``): cut them at a word, or drop them."""

    max_chars: int | None = Field(
        default=None, ge=1, le=5000, description="default: chat.max_length"
    )
    action: Literal["truncate", "drop"] = "truncate"


class CooldownFilter(_Section):
    """Per-user pause between spoken messages (``filters.cooldown``); 0 switches it off."""

    seconds: float = Field(default=0.0, ge=0.0, le=86_400.0)
    exempt: RoleName = Field(default="moderator", description="this role and above skip it")
    paid_exempt: bool = True


class FiltersConfig(_Section):
    """What is removed from a message, or stops it, before it is spoken (``filters``)."""

    links: LinksFilter = LinksFilter()
    emotes: EmotesFilter = EmotesFilter()
    repeats: RepeatsFilter = RepeatsFilter()
    zalgo: ZalgoFilter = ZalgoFilter()
    emoji: EmojiFilter = EmojiFilter()
    banned_words: BannedWordsFilter = BannedWordsFilter()
    ignore: IgnoreFilter = IgnoreFilter()
    length: LengthFilter = LengthFilter()
    cooldown: CooldownFilter = CooldownFilter()


class TriggersConfig(_Section):
    """Which chat messages are spoken (``triggers``); any enabled trigger is enough."""

    messages: bool = Field(default=True, description="every chat message")
    command: bool = Field(default=True, description="the tts command (!tts TEXT)")
    rewards: bool = Field(default=True, description="the rewards listed in twitch.rewards")
    cheers: bool = Field(default=True, description="cheers of at least twitch.min_bits")
    min_role: RoleName = Field(default="everyone", description="lowest role that is spoken")


class TtsConfig(_Section):
    """How a message is announced (``tts``)."""

    say_names: bool = True
    template: str = "{name} says {text}"
    name_again_after_s: float = Field(
        default=300.0, ge=0.0, description="repeat the name of a repeated speaker after this"
    )
    announce_broadcaster: bool = Field(default=False, description="say the streamer's name too")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        import string

        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"is not a valid template ({exc}); write {{{{ for a brace") from None
        fields = []
        for _literal, field, spec, conversion in parts:
            if field is None:
                continue
            if field not in ("name", "text") or spec or conversion:
                raise ValueError("may only use {name} and {text}")
            fields.append(field)
        if "text" not in fields:
            raise ValueError("must contain {text}")
        return value


class Config(_Section):
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
