"""Local state that survives a restart: the SQLite store and where state files live."""
