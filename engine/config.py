"""The engine's settings: typed, validated, immutable sections of ``config.yaml``.

They live with the engine so that it stands alone (``ishowtts serve``, benchmarks, tests):
nothing under ``engine/`` imports the bot. The bot's own sections reuse :class:`Section`, the
strict base model (unknown keys forbidden, paths resolved against the config file's folder),
and ``bot.config`` composes all sections into the one ``Config``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.functional_validators import AfterValidator

DEFAULT_CHECKPOINT = "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
DEFAULT_VOCAB = "hf://SWivid/F5-TTS/F5TTS_v1_Base/vocab.txt"
DEFAULT_VOCODER = "charactr/vocos-mel-24khz"
BUILTIN_VOICE = "default"
VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+\Z")


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """An absolute path: relative ones resolve against the config file's folder."""
    value = value.expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


def _resolve_location(value: str, info: ValidationInfo) -> str:
    """Keep ``hf://`` URLs; turn anything else into an absolute local path."""
    if value.startswith("hf://"):
        if len(value.removeprefix("hf://").split("/")) < 3:
            raise ValueError("an hf:// URL must look like hf://OWNER/REPO/path/to/file")
        return value
    return str(resolve_path(Path(value), info))


def _resolve_vocoder(value: str, info: ValidationInfo) -> str:
    """A hub repo id (``owner/name``) stays as is unless a local folder of that name exists."""
    local = Path(value).expanduser()
    if not local.is_absolute():
        local = _base_dir(info) / local
    if _HUB_REPO_RE.match(value) and not local.exists() and not value.startswith("."):
        return value
    return str(local.resolve())


ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
Location = Annotated[str, AfterValidator(_resolve_location)]


class Section(BaseModel):
    """A config section: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _fill_sections(cls, data: Any) -> Any:
        """Validate absent sub-sections from {} so their paths resolve against the config file."""
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                ann = info.annotation
                if name not in data and isinstance(ann, type) and issubclass(ann, Section):
                    data = {**data, name: {}}
        return data


class F5Config(Section):
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
    max_batch: int = Field(
        default=16,
        ge=1,
        le=64,
        description="most requests one batched sampling pass holds (1: no batching)",
    )
    max_batch_frames: int = Field(
        default=24576,
        ge=2048,
        le=131072,
        description="longest batched pass in mel frames (bounds the batch graphs' GPU memory)",
    )
    ready_frames: int = Field(
        default=1600,
        ge=0,
        le=3072,
        description="single-request lengths (mel frames, reference included) whose CUDA "
        "graphs are captured before the engine is ready; the rest while idle",
    )
    loop_graphs: bool = Field(
        default=False,
        description="one CUDA graph per length for all sampling steps instead of one per step",
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


class EspeakVoiceConfig(Section):
    """One bot voice's eSpeak NG settings (``engine.espeak.voices.<name>``).

    Unset keys keep what the automatic mapping gives that name.
    """

    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+\-]{1,40}$")
    rate: int | None = Field(default=None, ge=80, le=450, description="words per minute")
    pitch: int | None = Field(default=None, ge=0, le=99)


class EspeakConfig(Section):
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


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (nothing else on the network can connect)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


TOKEN_ENV = "ISHOWTTS_SERVE_TOKEN"
"""The environment variable that holds an ``ishowtts serve`` token (both sides read it)."""
SERVE_TOKEN_FILE = "serve-token"
"""The token's file in the state folder: made by ``serve``, read by ``engine.name: remote``."""


class RemoteConfig(Section):
    """An ``ishowtts serve`` to speak through (``engine.remote``, for ``engine.name: remote``).

    The token comes from the environment variable ``token_env`` or, when it is unset, from
    the ``serve-token`` file in the state folder (where ``serve`` on the same machine keeps
    it; on another PC, copy it there with mode 0600).
    """

    url: str = Field(default="http://127.0.0.1:8766", max_length=2000)
    token_env: str = Field(default=TOKEN_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}\z")
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    read_timeout_s: float = Field(
        default=15.0, gt=0, le=600, description="longest wait for the server's next chunk"
    )
    on_failure: Literal["espeak", "wait"] = Field(
        default="espeak",
        description="while the server is unreachable: speak with eSpeak NG here, or wait for it",
    )
    retry_s: float = Field(
        default=10.0, gt=0, le=3600, description="how often an unreachable server is tried again"
    )
    ca_file: ConfigPath | None = Field(
        default=None, description="certificate to trust for an https:// server (self-signed)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            raise ValueError(f"is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://HOST:PORT (or https://), e.g. the gaming PC")
        return value.rstrip("/")


class ServeConfig(Section):
    """``ishowtts serve``: the engine as an OpenAI-compatible speech service (``serve``)."""

    allow_remote: bool = Field(
        default=False, description="allow serve.host to be reachable from other machines"
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8766, ge=0, le=65535, description="0 picks a free port")
    cert: ConfigPath | None = Field(default=None, description="TLS certificate (PEM)")
    key: ConfigPath | None = Field(default=None, description="TLS private key (PEM)")
    max_queue: int = Field(
        default=16, ge=1, le=1024, description="requests admitted at once (running + waiting)"
    )
    per_token: int = Field(default=4, ge=1, le=1024, description="requests at once per token")
    max_input_chars: int = Field(default=4096, ge=1, le=100_000)
    retry_after_s: int = Field(default=2, ge=1, le=3600)
    cors_origins: tuple[str, ...] = Field(
        default=("*",), description="web origins that may call the API from a browser"
    )
    max_batch: int = Field(
        default=1, ge=1, le=64, description="requests waiting together run as one batch"
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a client that reads nothing for this long is dropped (its slot freed)",
    )
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        le=200,
        description="how long a batch of two or more waits for more (a lone request never waits)",
    )
    voice_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="other names for voices, e.g. OpenAI's (alloy: default) for clients that "
        "offer only those",
    )

    @field_validator("voice_aliases", mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        # Checked before the types, so a bad entry is one error at serve.voice_aliases
        # naming it, not a path made of the user's own key.
        if not isinstance(value, dict):
            return value  # pydantic words the wrong type
        for alias, voice in value.items():
            for word in (alias, voice):
                if not isinstance(word, str) or not VOICE_NAME_RE.match(word):
                    raise ValueError(
                        f"{word!r} is not a voice name (1-32 letters, digits, '-' or '_')"
                    )
        return {alias.lower(): voice.lower() for alias, voice in value.items()}

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_remote", False) and not is_loopback(value):
            raise ValueError(
                "is reachable from other machines; use 127.0.0.1, or set "
                "serve.allow_remote: true to serve the gaming PC's voices on the network"
            )
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ServeConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("serve.cert and serve.key go together: set both or neither")
        return self


class EngineConfig(Section):
    """Which TTS engine runs, and where (``engine``)."""

    name: Literal["auto", "f5", "espeak", "remote"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    f5: F5Config = F5Config()
    espeak: EspeakConfig = EspeakConfig()
    remote: RemoteConfig = RemoteConfig()


class VoicesConfig(Section):
    """Where voices live and which one speaks by default (``voices``)."""

    dir: ConfigPath = Path("voices")
    default: str = BUILTIN_VOICE

    @field_validator("default")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VOICE_NAME_RE.match(value):
            raise ValueError("must be 1-32 letters, digits, '-' or '_'")
        return value
