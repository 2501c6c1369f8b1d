"""The engine contract: what the bot (or a server) may ask of any text-to-speech backend.

Engines are plain synchronous objects. They never see asyncio: the engine worker thread
(``engine.worker``) is the only caller, so an engine may hold torch state, CUDA graphs or a
non-thread-safe C library without locks.

Two ways to synthesise:

* ``synthesize(text, voice, should_stop, speed=...)``: one request, an iterator of audio
  chunks;
* ``synthesize_batch(requests)``: several requests (different texts, voices and lengths)
  at once, an iterator of :class:`BatchChunk` events saying which request each chunk
  belongs to. An engine that can (F5 on CUDA) runs them through one sampling pass per
  round: round 1 is every request's first piece, round 2 every second piece, and so on,
  so a raid's first audio arrives for all messages together. Each request's audio equals
  what ``synthesize`` gives it alone (same noise), up to fp16 rounding. Every request gets
  exactly one event with ``last=True`` (its final chunk, or an end without audio when it
  was stopped or failed). A request whose ``should_stop`` returns True is dropped at the
  next round; the others go on. Engines without batching (eSpeak) run the requests one
  after another through ``synthesize`` (the default below).

``EngineWorker.submit_batch`` is the event-loop side of ``synthesize_batch``.

Speed: every request may ask for its own speaking speed (``speed``, a factor: 2.0 speaks in
about half the time, 0.5 in twice the time; 1.0 is the engine's configured pace, unchanged).
OpenAI's speech API takes 0.25-4.0, and ``ishowtts serve`` passes it through. Each engine
gives it its own meaning (F5: the generated duration is divided by it, as in f5-tts's own
``infer_process``; eSpeak NG: the words per minute are multiplied by it). A request of a
batch keeps its own speed. Callers pass ``speed`` only when it is not 1.0, so an engine
written before speed existed (a test double) still serves every request at 1.0.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable, Iterator, Sequence
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


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """One request of a batch.

    Attributes:
        text: Already cleaned, non-empty text.
        voice: A voice name (unknown names fall back to the default voice, logged).
        should_stop: Polled between rounds; once True the request is dropped.
        speed: Speaking speed factor (1.0: the engine's configured pace; see the module
            docstring).
    """

    text: str
    voice: str
    should_stop: StopCheck
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class BatchChunk:
    """One event of ``Engine.synthesize_batch``.

    Attributes:
        index: Which request (its position in the list given).
        audio: The request's next audio chunk, or None (an end without audio).
        last: The request has nothing more after this event.
        error: Why the request failed (then ``last`` is True and ``audio`` None); the other
            requests of the batch carry on.
    """

    index: int
    audio: Audio | None = None
    last: bool = False
    error: EngineError | None = None


class Engine(abc.ABC):
    """A text-to-speech backend driven by the engine thread.

    Attributes:
        name: Short engine name for logs ("f5", "espeak").
        sample_rate: Rate of every chunk ``synthesize`` yields.
        max_batch: Most requests ``synthesize_batch`` runs together (1: one after another;
            known after ``load``).
    """

    name: str = "engine"
    sample_rate: int = 24_000
    max_batch: int = 1

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
    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, *, speed: float = 1.0
    ) -> Iterator[Audio]:
        """Speak ``text`` in ``voice``, yielding audio chunks as they are ready.

        Args:
            text: Already cleaned, non-empty text.
            voice: A voice name from ``voices()``; engines fall back to their default voice
                (with a log line) when it is unknown.
            should_stop: Polled between chunks; once it returns True the engine stops early.
            speed: Speaking speed factor, positive (1.0: the configured pace, exactly as
                without it; 2.0: about half as long).

        Raises:
            EngineError: When this text cannot be spoken; the worker reports it and moves on.
        """

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> Iterator[BatchChunk]:
        """Speak several requests; see the module docstring for the order and the guarantees.

        This default runs them one after another through ``synthesize``, each at its own
        speed: correct for any engine, batched for none. A request's ``EngineError`` ends
        that request only.
        """
        for index, request in enumerate(requests):
            if request.should_stop():
                yield BatchChunk(index, last=True)
                continue
            try:
                pending: Audio | None = None
                if request.speed == 1.0:
                    chunks = self.synthesize(request.text, request.voice, request.should_stop)
                else:
                    chunks = self.synthesize(
                        request.text, request.voice, request.should_stop, speed=request.speed
                    )
                for chunk in chunks:
                    if pending is not None:
                        yield BatchChunk(index, pending)
                    pending = chunk
            except EngineError as exc:
                yield BatchChunk(index, last=True, error=exc)
                continue
            yield BatchChunk(index, pending, last=True)

    def idle_work(self) -> bool:
        """Do one short piece of deferred preparation while no job waits.

        The worker calls it between jobs (never during one). The F5 engine captures the
        CUDA graphs it left out of start-up here, one per call.

        Returns:
            Whether more remains (the worker calls again while the queue stays empty).
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook, most engines need nothing
        """Release models and library handles."""


def check_speed(speed: float) -> float:
    """``speed`` as a float, refused unless it is a positive finite number.

    Raises:
        ValueError: For zero, a negative number, NaN or infinity (a caller's mistake: the
            HTTP server checks OpenAI's 0.25-4.0 range before it gets here).
    """
    value = float(speed)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"speed must be a positive number, not {speed!r}")
    return value
