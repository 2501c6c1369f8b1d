"""Shared pytest set-up: fixture modules live beside this file, one per real component."""

pytest_plugins = [
    "tests.support.f5",
    "tests.support.audio",
]
