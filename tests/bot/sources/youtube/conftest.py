"""The YouTube double's fixture, for every test in this folder."""

from tests.support.youtube_double import youtube_double

__all__ = ["youtube_double"]
