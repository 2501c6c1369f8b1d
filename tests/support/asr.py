"""Offline speech recognition for tests: did the speakers really say the typed words?

pocketsphinx ships its en-us acoustic model, dictionary and language model inside its wheel,
so tests can transcribe what reached the PulseAudio sink without any download. The recipe
follows ``/work/shared/notes/espeak-and-asr.md`` (measured): 16 kHz mono int16, ~0.3 s of
silence padding on both sides, low Gaussian noise with a fixed seed (eSpeak's digital silence
confuses the recogniser), and one ``full_utt`` pass, which makes the result deterministic for
the same audio. Judge results by word error rate, never by exact transcript.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import soxr

ASR_RATE = 16_000
_PAD_S = 0.3
_NOISE_STD = 0.0015
_NOISE_SEED = 1234


def transcribe(audio: npt.NDArray[np.floating], rate: int) -> str:
    """Return pocketsphinx's transcript (lower case, words separated by spaces).

    Args:
        audio: Mono (or N x channels, which is mixed down) float samples in [-1, 1].
        rate: Sample rate of ``audio``.
    """
    from pocketsphinx import Decoder  # heavy import only where a test needs it

    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != ASR_RATE:
        samples = soxr.resample(samples, rate, ASR_RATE).astype(np.float32)
    pad = np.zeros(int(_PAD_S * ASR_RATE), dtype=np.float32)
    samples = np.concatenate([pad, samples, pad])
    noise = np.random.default_rng(_NOISE_SEED).normal(0.0, _NOISE_STD, samples.size)
    samples = np.clip(samples + noise.astype(np.float32), -1.0, 1.0)
    pcm = (samples * 32767.0).astype("<i2").tobytes()
    decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return "" if hyp is None else " ".join(words(hyp.hypstr))


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` without punctuation (and without <s>-style fillers)."""
    cleaned = re.sub(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)", " ", text.lower())
    return re.findall(r"[a-z']+", cleaned)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance divided by the reference's word count.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)
