"""Twitch chat over EventSub (twitchio 3): the source, its sign-in tokens and its settings."""
