"""Neutralise control characters in user text and mask secrets in what the service shows.

A newline or an ANSI escape in a symbol, a query or a chat message must not forge a log
line or steer a terminal; prompts get the text with such characters replaced by a space
(tabs and, where ``keep_newlines``, line breaks stay).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from core.settings import Settings

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                       "\u2066-\u2069]")
_CONTROLS_AND_NEWLINES = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                                    "\u2066-\u2069]")
MASK = "********"


def neutralize(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with control and bidirectional-override characters replaced by spaces."""
    pattern = _CONTROLS if keep_newlines else _CONTROLS_AND_NEWLINES
    return pattern.sub(" ", text)


def mask_url(url: str) -> str:
    """``url`` with any password (and a user name that may be a key) replaced by the mask."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings for display: secrets masked, URLs without credentials."""
    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown[name] = MASK
        elif isinstance(value, str) and name.endswith("_url"):
            shown[name] = mask_url(value)
        elif isinstance(value, tuple):
            shown[name] = list(value)
        elif isinstance(value, str | int | float | bool) or value is None:
            shown[name] = value
        else:
            shown[name] = str(value)
    return shown
