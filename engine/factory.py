"""Engine selection: which TTS engine ``engine.name`` gets, and the ``auto`` fallback.

``remote`` speaks through an ``ishowtts serve`` elsewhere (``engine.remote``).

``f5`` means F5-TTS or a clear failure; ``espeak`` means eSpeak NG; ``auto`` means F5-TTS when it
can keep up with chat (a usable CUDA GPU and weights that load), otherwise eSpeak NG with a
prominent warning that says which condition failed and how to fix it. A streamer without an
NVIDIA GPU still gets a working bot, and is told plainly why it is not cloning voices.

Nothing here touches torch or the disk at import or construction time: the choice is made in
``load()``, on the engine thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from engine.base import (
    Audio,
    BatchChunk,
    Engine,
    EngineError,
    EngineState,
    StopCheck,
    SynthesisRequest,
    VoiceInfo,
)
from engine.config import EngineConfig, VoicesConfig
from engine.espeak import EspeakEngine

log = logging.getLogger(__name__)

_BANNER = "=" * 72


def create_engine(
    engine: EngineConfig, voices: VoicesConfig, *, cache_dir: Path | None = None
) -> Engine:
    """Build (but do not load) the engine that ``engine.name`` selects.

    Args:
        engine: The ``engine`` section.
        voices: The ``voices`` section (where the voice folders are, the default voice).
        cache_dir: Where compiled GPU kernels are kept between runs (the bot's state folder);
            None: torch's default.

    Returns:
        An unloaded engine; the engine thread calls ``load()``.
    """
    name = engine.name
    if name == "espeak":
        return EspeakEngine(engine.espeak, voices)
    if name == "f5":
        return _f5_engine(engine, voices, cache_dir)
    if name == "remote":
        from engine.remote import RemoteEngine

        return RemoteEngine(engine.remote, engine.espeak, voices, state_dir=cache_dir)
    return AutoEngine(engine, voices, cache_dir=cache_dir)


def _f5_engine(engine: EngineConfig, voices: VoicesConfig, cache_dir: Path | None) -> Engine:
    """Import the F5 engine only when it is wanted: it pulls in torch (seconds to import)."""
    from engine.f5 import F5Engine

    return F5Engine(
        engine.f5,
        voices,
        engine.device,
        compile_cache=cache_dir / "torch-compile-cache" if cache_dir is not None else None,
    )


def cuda_problem() -> str | None:
    """Why F5-TTS cannot run on a CUDA GPU here, or None when one is usable.

    The three cases need different fixes, so they get different messages: torch missing,
    a CPU-only torch build, and a CUDA build that finds no GPU (driver or hardware).
    """
    try:
        import torch
    except ImportError as exc:
        return (
            f"torch cannot be imported ({exc}); install it with the project "
            "(pip install -e .), choosing a CUDA build from https://pytorch.org"
        )
    if not torch.version.cuda:
        return (
            f"torch {torch.__version__} is a build without CUDA; install a CUDA build, e.g. "
            "`pip install --force-reinstall torch torchaudio --index-url "
            "https://download.pytorch.org/whl/cu124`"
        )
    if not torch.cuda.is_available():
        return (
            f"no CUDA GPU is usable (torch {torch.__version__} built for CUDA "
            f"{torch.version.cuda} found none); check the NVIDIA driver with `nvidia-smi`"
        )
    return None


class AutoEngine(Engine):
    """F5-TTS when it can keep up with chat, otherwise eSpeak NG; the reason is logged.

    After ``load()`` every call goes to ``chosen``; ``fallback_reason`` says why eSpeak NG was
    chosen (None when F5-TTS runs). ``name`` and ``sample_rate`` follow the chosen engine, which
    is why the worker reads the rate when each job starts.
    """

    def __init__(
        self, engine: EngineConfig, voices: VoicesConfig, *, cache_dir: Path | None = None
    ) -> None:
        """Remember the settings; nothing is imported or loaded until ``load()``."""
        self._engine = engine
        self._voices = voices
        self._cache_dir = cache_dir
        self.chosen: Engine | None = None
        self.fallback_reason: str | None = None

    @property  # type: ignore[override]
    def name(self) -> str:
        """``auto`` until loaded, then the chosen engine's name."""
        return "auto" if self.chosen is None else self.chosen.name

    @name.setter
    def name(self, value: str) -> None:
        raise AttributeError("the auto engine's name follows the chosen engine")

    @property  # type: ignore[override]
    def sample_rate(self) -> int:
        """The chosen engine's rate (F5-TTS's 24 kHz until one is chosen)."""
        return 24_000 if self.chosen is None else self.chosen.sample_rate

    @sample_rate.setter
    def sample_rate(self, value: int) -> None:
        raise AttributeError("the auto engine's sample rate follows the chosen engine")

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        """Try F5-TTS where it makes sense, else load eSpeak NG and say why, prominently.

        Raises:
            EngineError: Only when eSpeak NG itself cannot start.
        """
        reason = self._f5_blocker()
        if reason is None:
            f5 = _f5_engine(self._engine, self._voices, self._cache_dir)
            try:
                f5.load(progress)
            except EngineError as exc:
                reason = f"F5-TTS could not load: {exc}"
            except Exception as exc:  # e.g. CUDA out of memory: still give the user a voice
                log.exception("F5-TTS failed to load")
                reason = f"F5-TTS failed to load ({type(exc).__name__}: {exc})"
            else:
                self.chosen = f5
                self.fallback_reason = None
                log.info("engine auto: using F5-TTS on the GPU")
                return
            _close_quietly(f5)
        self.fallback_reason = reason
        log.warning(
            "\n%s\nNOT USING F5-TTS (engine.name: auto): speaking with eSpeak NG instead.\n"
            "Why: %s\n"
            "Voice names still work: each maps to its own eSpeak NG voice.\n"
            "To get cloned voices, fix the above (F5-TTS needs an NVIDIA GPU to keep up with "
            "chat).\nSet engine.name: espeak to choose eSpeak NG on purpose, or engine.name: "
            "f5 to make this an error instead of a fallback.\n%s",
            _BANNER,
            reason,
            _BANNER,
        )
        progress(EngineState.LOADING, f"F5-TTS unavailable, using eSpeak NG: {reason}")
        espeak = EspeakEngine(self._engine.espeak, self._voices)
        espeak.load(progress)
        self.chosen = espeak

    def _f5_blocker(self) -> str | None:
        """Why F5-TTS should not even be tried (None: try it)."""
        if self._engine.device == "cpu":
            return (
                "engine.device is 'cpu', and F5-TTS on a CPU runs about 15x slower than real "
                "time; use engine.device: auto with an NVIDIA GPU, or engine.name: f5 to run "
                "F5-TTS on the CPU anyway"
            )
        problem = cuda_problem()
        if problem is None:
            return None
        return (
            f"{problem}. F5-TTS on a CPU runs about 15x slower than real time; set "
            "engine.name: f5 and engine.device: cpu to run it there anyway"
        )

    def _require(self) -> Engine:
        if self.chosen is None:
            raise EngineError("the TTS engine is not loaded yet")
        return self.chosen

    def voices(self) -> list[VoiceInfo]:
        """The chosen engine's voices."""
        return self._require().voices()

    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, *, speed: float = 1.0
    ) -> Iterator[Audio]:
        """Speak through the chosen engine, at ``speed`` (passed on only when not 1.0).

        Raises:
            EngineError: When not loaded, or when the chosen engine fails.
        """
        if speed == 1.0:
            return self._require().synthesize(text, voice, should_stop)
        return self._require().synthesize(text, voice, should_stop, speed=speed)

    @property
    def max_batch(self) -> int:  # type: ignore[override]
        """The chosen engine's batch size (1 until one is chosen)."""
        return 1 if self.chosen is None else self.chosen.max_batch

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> Iterator[BatchChunk]:
        """Speak several requests through the chosen engine (batched where it can).

        Raises:
            EngineError: When not loaded.
        """
        return self._require().synthesize_batch(requests)

    def idle_work(self) -> bool:
        """The chosen engine's deferred preparation (F5: the CUDA graphs left for later)."""
        return False if self.chosen is None else self.chosen.idle_work()

    def close(self) -> None:
        """Close the chosen engine."""
        if self.chosen is not None:
            self.chosen.close()


def _close_quietly(engine: Engine) -> None:
    """Free whatever a failed load left behind (GPU memory) without masking the reason."""
    try:
        engine.close()
    except Exception:
        log.exception("closing the %s engine after its failed load also failed", engine.name)
