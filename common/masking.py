"""Masking secrets in text for logs and error messages: URI credentials and secret query values."""

from __future__ import annotations

import re

MASK = "***"

# Query parameters whose values are secrets (cameras often take `?user=..&password=..`).
SECRET_PARAMS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "access_token",
    "auth",
    "key",
    "apikey",
    "api_key",
    "secret",
    "signature",
    "sig",
)

# `scheme://userinfo@`: userinfo runs to the last `@` before the first `/` or whitespace.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/'\"]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:" + "|".join(SECRET_PARAMS) + r")=)(?P<value>[^&;#\s'\"]*)", re.IGNORECASE
)


def mask_secrets(text: str) -> str:
    """Mask the credentials of every URI inside free text (e.g. an FFmpeg error message)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{_masked_userinfo(m['userinfo'])}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def _masked_userinfo(userinfo: str) -> str:
    return f"{MASK}:{MASK}" if ":" in userinfo else MASK
