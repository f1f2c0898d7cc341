"""Errors every layer may raise or catch, kept at the bottom so none has to import upwards."""

from __future__ import annotations


class ConfigError(ValueError):
    """The configuration cannot be composed or is inconsistent; the message names the key."""
