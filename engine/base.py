"""The engine contract: what the bot may ask of any text-to-speech backend.

Engines are plain synchronous objects. They never see asyncio: the engine worker thread
(``engine.worker``) is the only caller, so an engine may hold torch state, CUDA graphs or a
non-thread-safe C library without locks.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1] at the engine's ``sample_rate``."""

StopCheck = Callable[[], bool]
"""Returns True once the job was cancelled; engines poll it between chunks."""


class EngineError(RuntimeError):
    """A problem the user can fix (missing weights, bad voice); the message says how."""


class VoiceError(EngineError):
    """One voice is unusable (missing clip or transcript, unreadable file)."""


class EngineState(enum.Enum):
    """Life cycle reported to the bot (and shown by the control panel)."""

    STOPPED = "stopped"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """A voice as an engine offers it.

    Attributes:
        name: The name viewers type after ``!voice``.
        description: Where it comes from (folder, packaged clip, eSpeak voice).
        problem: Why it cannot be used, or None when it is fine.
    """

    name: str
    description: str
    problem: str | None = None


class Engine(abc.ABC):
    """A text-to-speech backend driven by the engine thread.

    Attributes:
        name: Short engine name for logs ("f5", "espeak").
        sample_rate: Rate of every chunk ``synthesize`` yields.
    """

    name: str = "engine"
    sample_rate: int = 24_000

    @abc.abstractmethod
    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        """Load weights and warm up. Heavy; runs on the engine thread.

        Args:
            progress: Called with LOADING/WARMING and a human-readable detail as work proceeds.

        Raises:
            EngineError: With a message that tells the user what to fix.
        """

    @abc.abstractmethod
    def voices(self) -> list[VoiceInfo]:
        """Voices this engine can speak with, including unusable ones with their problem."""

    @abc.abstractmethod
    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        """Speak ``text`` in ``voice``, yielding audio chunks as they are ready.

        Args:
            text: Already cleaned, non-empty text.
            voice: A voice name from ``voices()``; engines fall back to their default voice
                (with a log line) when it is unknown.
            should_stop: Polled between chunks; once it returns True the engine stops early.

        Raises:
            EngineError: When this text cannot be spoken; the worker reports it and moves on.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most engines need nothing
        """Release models and library handles."""
