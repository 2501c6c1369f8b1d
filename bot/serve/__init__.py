"""``ishowtts serve``: the engine and the voice library as an OpenAI-compatible speech API."""
