"""Download progress as log lines, for the first fetch of model weights from the hub.

The first start downloads ~1.4 GB of weights. Without feedback that looks like a hang, and
people kill the bot just before it would have worked. A terminal progress bar would be a mess
of carriage returns in log files, so this ``tqdm`` class logs a line every few seconds instead
(``hf_hub_download(..., tqdm_class=DownloadProgress)``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from tqdm.std import tqdm as _tqdm

log = logging.getLogger("bot.setup.progress")  # what the streamer reads as start-up progress


def format_bytes(size: float) -> str:
    """``1.35 GB``, ``412 MB``, ``950 kB`` (decimal units, as download sizes are quoted)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.{2 if unit == 'GB' else 0}f} {unit}"
    return f"{int(size)} B"


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 5 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class _Discard:
    """A text stream that drops everything (tqdm must not draw its own bar)."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None


class DownloadProgress(_tqdm):  # type: ignore[misc]
    """A ``tqdm_class`` that logs a download's progress instead of drawing a bar.

    The hub client creates one per file and calls ``update`` for every chunk, on whatever
    thread downloads (the engine thread here); logging is thread-safe, so that is fine.

    Attributes:
        interval_s: Least time between two progress lines.
        refresh_s: Least time between two checks of the counter (tqdm's ``mininterval``).
    """

    interval_s: float = 5.0
    refresh_s: float = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Accept the hub client's arguments; never draw, never disable counting."""
        kwargs.pop("name", None)  # huggingface_hub's own tqdm takes it; plain tqdm refuses it
        kwargs["file"] = _Discard()
        kwargs["disable"] = False
        kwargs["mininterval"] = self.refresh_s
        self._last_line = -math.inf
        self._closing = False
        self._started = time.monotonic()
        super().__init__(*args, **kwargs)

    @property
    def label(self) -> str:
        """The file being downloaded.

        The hub client passes a file name, or the URL (shortened to ``(…)`` + its last 40
        characters), or ``name: reconstructing file`` as ``desc``; the file name is kept.
        """
        text = str(self.desc or "").replace("(…)", "").split("?", 1)[0]
        text = text.rsplit("/", 1)[-1].split(": ", 1)[0].strip(" :")
        return text or "weights"

    def progress_line(self, now: float | None = None) -> str:
        """How much has arrived, how fast, and how long is left (where the size is known)."""
        now = time.monotonic() if now is None else now
        done = float(self.n)
        elapsed = max(now - self._started, 1e-6)
        rate = done / elapsed
        line = f"downloading {self.label}: {format_bytes(done)}"
        if self.total:
            share = done / float(self.total)
            line += f" of {format_bytes(float(self.total))} ({share:.0%})"
        if done > 0:
            line += f", {format_bytes(rate)}/s"
            if self.total and rate > 0:
                line += f", about {format_duration((float(self.total) - done) / rate)} left"
        return line

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Called by tqdm on every refresh: log a line at most every ``interval_s``."""
        if self._closing:
            return True
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            log.info("%s", self.progress_line(now))
        return True

    def close(self) -> None:
        """Log the total and the time it took, once."""
        if not self._closing and not self.disable:
            self._closing = True
            took = time.monotonic() - self._started
            complete = not self.total or self.n >= self.total
            verb = "downloaded" if complete else "download stopped after"
            log.info(
                "%s %s: %s in %s",
                verb,
                self.label,
                format_bytes(float(self.n)),
                format_duration(took),
            )
        super().close()
