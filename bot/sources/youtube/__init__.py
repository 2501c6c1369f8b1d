"""YouTube Live chat (YouTube Data API v3): the source, its sign-in tokens and its settings."""
