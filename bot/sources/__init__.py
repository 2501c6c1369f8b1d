"""Chat sources: platform adapters that only translate events into ``bot.core.messages``."""
