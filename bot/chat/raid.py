"""Raid mode: a long queue switches the bot into leaner reading, a drained one switches it back.

``raid.steps`` are thresholds on the queue length, each with what to give up from then on:
reading names, long messages (a shorter cut), frequent messages of one person (a longer
per-user cooldown), free messages (paid only). Steps add up: the third step keeps what the
first two gave up unless it says otherwise. The mode only ever steps up while the queue is
long, and goes back to normal once the queue drains; each change is announced in chat once.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.chat.settings import RaidConfig


@dataclass(frozen=True, slots=True)
class RaidRules:
    """What a raid-mode level changes (None: as configured outside raid mode)."""

    level: int
    say_names: bool | None = None
    max_chars: int | None = None
    cooldown_s: float | None = None
    paid_only: bool = False

    def describe(self, of: int) -> str:
        """The chat announcement of this level (``of``: how many levels there are)."""
        if self.level == 0:
            return "raid mode off: reading chat as usual again"
        said: list[str] = []
        if self.say_names is False:
            said.append("names are not read")
        if self.max_chars is not None:
            said.append(f"messages are cut to {self.max_chars} characters")
        if self.cooldown_s is not None:
            said.append(f"{self.cooldown_s:g} s between messages of one person")
        if self.paid_only:
            said.append("only cheers and rewards are read")
        what = ", ".join(said) if said else "reading as usual"
        return f"raid mode {self.level} of {of}: {what}"


NORMAL = RaidRules(0)


class RaidMode:
    """The current raid-mode level, moved by the queue length."""

    def __init__(self, cfg: RaidConfig) -> None:
        """Precompute each level's rules (steps add up)."""
        self._enabled = cfg.enabled
        self._thresholds = [step.queue for step in cfg.steps]
        levels = [NORMAL]
        for number, step in enumerate(cfg.steps, start=1):
            before = levels[-1]
            levels.append(
                RaidRules(
                    level=number,
                    say_names=step.say_names if step.say_names is not None else before.say_names,
                    max_chars=step.max_chars if step.max_chars is not None else before.max_chars,
                    cooldown_s=(
                        step.cooldown_s if step.cooldown_s is not None else before.cooldown_s
                    ),
                    paid_only=step.paid_only or before.paid_only,
                )
            )
        self._levels = levels
        self.rules = NORMAL

    @property
    def levels(self) -> int:
        """How many steps there are."""
        return len(self._levels) - 1

    def observe(self, queue_length: int) -> RaidRules | None:
        """Step up to the level the queue length reaches; the new rules when they changed.

        The level never goes down here: a raid queue shrinking from 25 to 18 is still a raid.
        """
        if not self._enabled:
            return None
        reached = sum(1 for at in self._thresholds if queue_length >= at)
        if reached <= self.rules.level:
            return None
        self.rules = self._levels[reached]
        return self.rules

    def drained(self) -> RaidRules | None:
        """The queue is empty: back to normal; NORMAL when that is a change, else None."""
        if self.rules.level == 0:
            return None
        self.rules = NORMAL
        return NORMAL
