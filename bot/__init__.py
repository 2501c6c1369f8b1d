"""ishowtts, the asyncio side: chat sources in, speech out (map: docs/architecture.md)."""
