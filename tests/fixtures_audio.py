"""Fixtures that run a real PulseAudio null sink (owned by the player work)."""
