"""Shared pytest set-up: fixture modules live beside this file, one per real component."""

pytest_plugins = [
    "tests.fixtures_f5",
    "tests.fixtures_audio",
]
