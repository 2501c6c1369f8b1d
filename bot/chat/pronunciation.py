"""How words are said: a dictionary of words and patterns to spoken forms.

Emote names, channel jargon and the names of regulars often come out wrong ("GG", "PogChamp",
"xQc"). Entries come from ``pronunciation`` in the config and from moderators in chat
(``!say WORD as SPOKEN``, saved in the store; a chat entry wins over a config one for the
same word). They are applied after the filters and before synthesis, to what is spoken only:
the overlay and the history show what was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from bot.chat.settings import PronunciationConfig


def _literal(spoken: str) -> Callable[[re.Match[str]], str]:
    """A replacement that inserts ``spoken`` as it is (no group references to expand)."""
    return lambda _match: spoken


class Pronouncer:
    """Replaces configured and saved words and patterns by their spoken forms."""

    def __init__(self, cfg: PronunciationConfig) -> None:
        """Compile the config's entries (the saved ones come with :meth:`use_saved`)."""
        self._configured = {word.casefold(): spoken for word, spoken in cfg.words.items()}
        self._saved: dict[str, str] = {}
        self._patterns = [(re.compile(p.match, re.IGNORECASE), p.say) for p in cfg.patterns]
        self._words: dict[str, str] = {}
        self._word_re: re.Pattern[str] | None = None
        self._rebuild()

    def use_saved(self, entries: Mapping[str, str]) -> None:
        """Take the entries moderators saved (word -> spoken form); they override the config."""
        self._saved = {word.casefold(): spoken for word, spoken in entries.items()}
        self._rebuild()

    @property
    def words(self) -> dict[str, str]:
        """Every word entry in use (case-folded word -> spoken form)."""
        return dict(self._words)

    def _rebuild(self) -> None:
        self._words = {**self._configured, **self._saved}
        if not self._words:
            self._word_re = None
            return
        # Longest first, so "gg wp" style overlaps pick the longer word.
        alternatives = sorted(self._words, key=len, reverse=True)
        self._word_re = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(w) for w in alternatives) + r")(?!\w)",
            re.IGNORECASE,
        )

    @property
    def active(self) -> bool:
        """Whether there is anything to replace."""
        return self._word_re is not None or bool(self._patterns)

    def apply(self, text: str) -> str:
        """``text`` with every entry replaced by its spoken form (the text when none match)."""
        if self._word_re is not None:
            words = self._words
            text = self._word_re.sub(lambda m: words.get(m.group(0).casefold(), m.group(0)), text)
        for pattern, spoken in self._patterns:
            text = pattern.sub(_literal(spoken), text)
        return " ".join(text.split())
