"""The HTTP side of the bot: the OBS overlay, the control panel and the ingest API."""
