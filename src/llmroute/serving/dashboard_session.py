"""The dashboard's login cookie: a signed, expiring token derived from the key, never the key itself.

A token is ``<expires>.<key id>.<signature>``: ``expires`` in epoch seconds, ``key id`` the first 16 hex
digits of SHA-256(key) (which key signed, without revealing it), ``signature`` the hex HMAC-SHA256 of
``<expires>.<key id>`` under a secret derived from the key. The guarantee: a token is accepted only
before it expires and only while the key that signed it is still configured (removing a key ends its
sessions); every worker process of one service accepts it (nothing is kept in memory); the key
cannot be recovered from the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

COOKIE = "llmroute_dashboard"


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _signature(key: str, payload: str) -> str:
    secret = hashlib.sha256(b"llmroute-dashboard-session\0" + key.encode()).digest()
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def issue(key: str, lifetime_s: float, now: float | None = None) -> str:
    """A token for ``key`` valid for ``lifetime_s`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + lifetime_s)
    payload = f"{expires}.{_key_id(key)}"
    return f"{payload}.{_signature(key, payload)}"


def verify(token: str | None, keys: Sequence[str], now: float | None = None) -> bool:
    """True when ``token`` was issued by one of ``keys`` and has not expired."""
    if not token or token.count(".") != 2:
        return False
    expires, key_id, signature = token.split(".")
    if not expires.isdigit() or int(expires) <= (time.time() if now is None else now):
        return False
    payload = f"{expires}.{key_id}"
    ok = False
    for key in keys:  # every key, no early exit
        same_id = secrets.compare_digest(_key_id(key), key_id)
        ok |= same_id and secrets.compare_digest(_signature(key, payload), signature)
    return ok
