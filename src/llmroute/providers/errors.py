"""What a provider's failure may tell our clients, and what goes to the log.

A provider's error text can carry anything: a fragment of our API key ("Incorrect API key provided:
sk-ab***yz"), account names, internal URLs. Clients and the decision log get only the status and a
generic reason (:func:`client_reason`); the provider's own words go to the service log with secrets
masked (:func:`mask_secrets`). A 401 or 403 from a provider is *our* configuration error (a missing,
wrong or under-privileged key), not the model failing: :func:`is_config_error`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_REASONS = {
    400: "the provider rejected the request",
    401: "the provider refused this service's credentials (a configuration error of this service)",
    403: "the provider refused this service's credentials (a configuration error of this service)",
    404: "the model or endpoint was not found at the provider",
    408: "the provider timed out",
    413: "the request is too large for the provider",
    422: "the provider could not process the request",
    429: "the provider is rate limiting",
}

_SECRETS = re.compile(
    r"(?i)(bearer\s+)\S+"  # Authorization values
    r"|\b(sk|pk|rk|key|api[_-]?key|token)[-_][A-Za-z0-9*_.\-]{4,}"  # sk-..., key-..., masked or not
    r"|\b[A-Za-z0-9_\-]{32,}\b"  # long opaque tokens
)


def is_config_error(status: int | None) -> bool:
    """True for 401 and 403: the provider refuses our credentials."""
    return status in (401, 403)


def client_reason(status: int) -> str:
    """``HTTP <status>: <generic reason>``, safe to return to clients and to store."""
    reason = _REASONS.get(status) or ("the provider had an internal error" if status >= 500 else "the provider refused the request")
    return f"HTTP {status}: {reason}"


def mask_secrets(text: str, known: Iterable[str | None] = ()) -> str:
    """``text`` with every ``known`` secret and anything shaped like a key or bearer token replaced by ``***``."""
    for secret in known:
        if secret:
            text = text.replace(secret, "***")
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "***", text)
