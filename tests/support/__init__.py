"""Real components for the tests: Twitch and hub doubles, audio and F5 fixtures, harnesses."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository's root folder."""
