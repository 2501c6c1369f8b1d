"""Where the F5-TTS weights come from: the one home of weight-file resolution.

Two callers need the same facts and must never disagree: the engine, which loads the files
(downloading them from the Hugging Face hub on first use), and ``ishowtts doctor``, which says
before any start where each file would come from without downloading anything. Both read the
list of files from :func:`weight_locations` and the offline switch from :func:`hub_offline`;
:func:`locate_weights` answers the doctor, :func:`resolve_weights` the engine.

Locations are ``hf://OWNER/REPO/path/in/repo`` URLs or local paths (``engine.f5.checkpoint``,
``engine.f5.vocab``); the vocoder is a hub repo id or a local folder holding ``config.yaml``
and ``pytorch_model.bin`` (``engine.f5.vocoder``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.base import EngineError
from engine.config import F5Config

OFFLINE_HINT = (
    "Run once with internet access to download them, or download them elsewhere and point "
    "engine.f5.checkpoint, engine.f5.vocab and engine.f5.vocoder in config.yaml at local "
    "copies (the vocoder as a folder holding config.yaml and pytorch_model.bin)."
)
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
_NOT_ON_HUB = {"RepositoryNotFoundError", "RemoteEntryNotFoundError", "EntryNotFoundError"}


@dataclass(frozen=True, slots=True)
class WeightFiles:
    """Local paths of everything the engine loads."""

    checkpoint: Path
    vocab: Path
    vocoder: Path
    """A folder holding config.yaml and pytorch_model.bin."""


@dataclass(frozen=True, slots=True)
class WeightFile:
    """Where one weight file stands, found without downloading it.

    Attributes:
        key: The config key naming it (``engine.f5.checkpoint`` ...).
        location: ``hf://repo/file`` or a local path.
        state: ``local`` (a local file), ``cached`` (in the hub cache), ``downloadable``
            (on the hub, not yet downloaded), ``missing``.
        detail: The local or cached path, or why it is missing.
        size: Bytes to download, when known.
    """

    key: str
    location: str
    state: Literal["local", "cached", "downloadable", "missing"]
    detail: str = ""
    size: int | None = None


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is on, read now.

    huggingface_hub itself reads it only at import, so a switch made later (tests, a
    launcher) would otherwise be missed.
    """
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _hub_cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def split_hub_location(location: str) -> tuple[str, str]:
    """``hf://owner/repo/path/file`` -> (``owner/repo``, ``path/file``)."""
    parts = location.removeprefix("hf://").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def weight_locations(f5: F5Config) -> list[tuple[str, str]]:
    """Every file ``engine.f5`` names, as (config key, location), in loading order.

    The vocoder counts as its two files, inside its local folder or its hub repo.
    """
    files = [("engine.f5.checkpoint", f5.checkpoint), ("engine.f5.vocab", f5.vocab)]
    if Path(f5.vocoder).is_absolute():
        files += [("engine.f5.vocoder", str(Path(f5.vocoder) / n)) for n in VOCODER_FILES]
    else:
        files += [("engine.f5.vocoder", f"hf://{f5.vocoder}/{n}") for n in VOCODER_FILES]
    return files


def hub_reason(exc: BaseException) -> str:
    """Why a hub download failed, in words a streamer can act on."""
    name = type(exc).__name__
    if name in {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or hub_offline():
        return "not in the local Hugging Face cache and the hub cannot be reached"
    if name in _NOT_ON_HUB:
        return "no such file on the hub"
    text = str(exc).strip().splitlines()
    return f"{name}: {text[-1][:160]}" if text else name


# -- asking (the doctor) ----------------------------------------------------------------------


def _probe_hub(
    repo: str, filename: str, endpoint: str | None, timeout_s: float, unreachable: str | None
) -> tuple[Literal["cached", "downloadable", "missing"], str, int | None]:
    """Look in the hub cache, then (unless offline or known unreachable) ask the hub."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename, cache_dir=_hub_cache_dir())
    if isinstance(cached, str):
        return "cached", cached, None
    if unreachable is not None:
        return "missing", unreachable, None
    if hub_offline():
        return "missing", "not in the Hugging Face cache, and HF_HUB_OFFLINE is on", None
    try:
        meta = get_hf_file_metadata(
            hf_hub_url(repo, filename, endpoint=endpoint), timeout=timeout_s, endpoint=endpoint
        )
    except Exception as exc:  # httpx and the hub client raise many types
        kind = type(exc).__name__
        if kind in _NOT_ON_HUB:
            return "missing", "no such file on the hub (check the URL)", None
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else kind
        return "missing", f"not downloaded, and the hub cannot be reached ({reason})", None
    return "downloadable", "not downloaded yet", meta.size


def locate_weights(
    f5: F5Config, *, endpoint: str | None = None, timeout_s: float = 3.0
) -> list[WeightFile]:
    """Where each file ``engine.f5`` names would come from: local, cached, downloadable, missing.

    Downloads nothing. A hub that does not answer within ``timeout_s`` is asked once, not
    once per file; with HF_HUB_OFFLINE on it is not asked at all.

    Args:
        f5: The ``engine.f5`` section.
        endpoint: Hub address (default: huggingface_hub's, which honours HF_ENDPOINT).
        timeout_s: Longest wait for the hub to answer about one file.
    """
    out: list[WeightFile] = []
    unreachable: str | None = None
    for key, location in weight_locations(f5):
        if not location.startswith("hf://"):
            path = Path(location)
            if path.is_file():
                out.append(WeightFile(key, location, "local", str(path)))
            else:
                out.append(WeightFile(key, location, "missing", f"{path} does not exist"))
            continue
        repo, filename = split_hub_location(location)
        state, detail, size = _probe_hub(repo, filename, endpoint, timeout_s, unreachable)
        if state == "missing" and "cannot be reached" in detail:
            unreachable = detail  # one timeout is enough to know; don't wait again
        out.append(WeightFile(key, location, state, detail, size))
    return out


# -- fetching (the engine) --------------------------------------------------------------------


def _hub_file(repo_id: str, filename: str) -> Path:
    """Fetch one file from the hub cache, downloading it (progress logged) if needed."""
    from huggingface_hub import hf_hub_download

    from engine.download import DownloadProgress

    path = hf_hub_download(
        repo_id=repo_id,
        filename=filename,
        tqdm_class=DownloadProgress,
        local_files_only=hub_offline(),
        cache_dir=_hub_cache_dir(),
    )
    return Path(path)


def resolve_weights(f5: F5Config, progress: Callable[[str], None] | None = None) -> WeightFiles:
    """Find (or download) the checkpoint, vocab and vocoder named by ``engine.f5``.

    Every missing file is collected first, so the one error lists all of them together
    with the config keys that can point at local copies.

    Raises:
        EngineError: When any file is missing locally and cannot be downloaded.
    """
    missing: list[str] = []
    found: dict[str, list[Path]] = {}
    failed: set[str] = set()
    for key, location in weight_locations(f5):
        if key in failed:
            continue
        if not location.startswith("hf://"):
            path = Path(location)
            if path.is_file():
                found.setdefault(key, []).append(path)
                continue
            failed.add(key)
            if key == "engine.f5.vocoder":
                absent = [n for n in VOCODER_FILES if not (Path(f5.vocoder) / n).is_file()]
                missing.append(f"{key}: {f5.vocoder} lacks {' and '.join(absent)}")
            else:
                missing.append(f"{key}: {path} does not exist")
            continue
        repo, filename = split_hub_location(location)
        if progress is not None and key not in found:
            what = f"the vocoder {f5.vocoder}" if key == "engine.f5.vocoder" else location
            progress(f"fetching {what} (downloaded on first use)")
        try:
            found.setdefault(key, []).append(_hub_file(repo, filename))
        except Exception as exc:  # the hub client raises many types when offline
            failed.add(key)
            if key == "engine.f5.vocoder":
                missing.append(
                    f"{key}: hub repo {f5.vocoder} ({', '.join(VOCODER_FILES)}: {hub_reason(exc)})"
                )
            else:
                missing.append(f"{key}: {location} ({hub_reason(exc)})")
    vocoder_files = found.get("engine.f5.vocoder", [])
    if len({path.parent for path in vocoder_files}) > 1:
        missing.append(f"engine.f5.vocoder: the hub cache holds {f5.vocoder} in two folders")
    if missing:
        offline = " (offline mode is on: HF_HUB_OFFLINE)" if hub_offline() else ""
        raise EngineError(
            f"F5-TTS weights are missing{offline}:\n  - "
            + "\n  - ".join(missing)
            + "\n"
            + OFFLINE_HINT
        )
    return WeightFiles(
        found["engine.f5.checkpoint"][0],
        found["engine.f5.vocab"][0],
        vocoder_files[0].parent,
    )
