"""Token check for a dashboard bound beyond loopback.

The same shared secret as an agent's `--token-file`. Scripts send
`Authorization: Bearer TOKEN`; a browser gets HTTP Basic's prompt (RFC 7617)
and sends the token as the password (any user name). Comparison is
constant-time and the token is never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def given_token(header: str) -> str:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


class TokenAuth:
    """ASGI middleware: every HTTP request carries the token, or gets 401."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._expected = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if not hmac.compare_digest(given_token(header).encode("utf-8"), self._expected):
            response = PlainTextResponse("this dashboard requires its token (Authorization: Bearer TOKEN, or the "
                                         "token as the password)\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Basic realm="harness", charset="UTF-8"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
