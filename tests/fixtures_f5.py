"""Fixtures that build tiny F5-TTS checkpoints (owned by the F5 engine work)."""
