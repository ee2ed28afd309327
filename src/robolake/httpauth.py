"""HTTP basic auth, the one way robolake's own HTTP endpoints ask who is calling.

    check = BasicAuth("robolake", token)      # the stack's admin token (robolake.state.Credentials)
    check.allows(request.headers.get("Authorization", ""))
    requests.get(url, auth=admin_auth(settings))

The admin endpoints (the accelerator's and the hooks server's /metrics and /stats, Prometheus)
ask for user ADMIN_USER and the stack's admin token; the console asks for the lakeFS key pair.
Health endpoints stay open, so supervisors and load balancers need no secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from robolake.config import Settings

ADMIN_USER = "robolake"
ADMIN_REALM = 'Basic realm="robolake admin", charset="UTF-8"'


class BasicAuth:
    """Whether an Authorization header carries `user` and `secret` (compared in constant time)."""

    def __init__(self, user: str, secret: str) -> None:
        self._user, self._secret = user.encode(), secret.encode()

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, secret = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared, always, so the time taken says nothing about which one was wrong.
        ok_user = hmac.compare_digest(user, self._user)
        ok_secret = hmac.compare_digest(secret, self._secret)
        return bool(sep) and ok_user and ok_secret


def admin_guard(token: str) -> BasicAuth | None:
    """The check of an admin endpoint whose password is `token` (None: "" asks for none)."""
    return BasicAuth(ADMIN_USER, token) if token else None


def refusal(guard: BasicAuth | None, request: web.Request) -> web.Response | None:
    """A 401 answer when `guard` does not let `request` in; None when it does."""
    if guard is None or guard.allows(request.headers.get("Authorization", "")):
        return None
    text = f"{request.path} asks for user {ADMIN_USER!r} and the stack's admin token (credentials.json: admin_token)"
    return web.Response(status=401, text=text, headers={"WWW-Authenticate": ADMIN_REALM})


def admin_auth(settings: Settings) -> tuple[str, str]:
    """(user, password) for the admin endpoints of the stack `settings` describe (requests' `auth=`)."""
    return ADMIN_USER, settings.resolve_admin_token()
