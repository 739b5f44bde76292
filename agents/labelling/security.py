"""The labelling server's defences: an access token off the loopback interface, allowed host
names on it, CSRF tokens on every form, and response headers that forbid inline scripts.

- Access token: when set (always, when serving on an interface other than loopback), a request
  must carry it, as ``?token=...`` (the link given to labellers: the server puts it in a cookie
  and redirects to the same page without it) or in that cookie; any other request gets 403.
- Allowed hosts: on loopback without a token, the ``Host`` header must be a loopback name, so a
  web page cannot reach the server through DNS rebinding.
- CSRF: each browser gets a random session cookie; every form carries
  ``HMAC-SHA256(server secret, session)`` and a POST without the right one is refused (a page of
  another site can neither read the cookie nor compute the token). Cookies are ``HttpOnly`` and
  ``SameSite=Strict``.
- Content-Security-Policy ``script-src 'self'``: even a response that got past the escaping
  could not run a script.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

TOKEN_COOKIE, SESSION_COOKIE = "label_token", "label_session"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: str, session: str) -> str:
    return hmac.new(secret.encode(), session.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, session: str | None, token: str | None) -> bool:
    return bool(session and token) and hmac.compare_digest(csrf_token(secret, session), token)


def set_cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", max_age=30 * 24 * 3600)


async def check_access(request: Request, call_next, token: str | None) -> Response:
    """The access-token check (module docstring), then the security headers."""
    given = request.query_params.get("token")
    from_query = (
        token is not None
        and given is not None
        and hmac.compare_digest(given.encode(), token.encode())
    )
    if token is not None and not from_query:
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), token.encode()):
            return PlainTextResponse(
                "403: this labelling server needs its access token; open the link that "
                "`rlhf-env label serve` printed (it ends in ?token=...)",
                status_code=403,
                headers=HEADERS,
            )
    if from_query and request.method == "GET":
        # Keep the token in a cookie and take it out of the address bar (and history).
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        response = RedirectResponse(str(request.url.replace(query=urlencode(query))), 303)
        set_cookie(response, TOKEN_COOKIE, token)
    else:
        response = await call_next(request)
    response.headers.update(HEADERS)
    return response
