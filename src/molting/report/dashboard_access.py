"""Who the dashboard (`molt serve`) answers, and the headers every answer carries.

A page the user visits elsewhere while the dashboard runs must not read its answers nor write a score or a
preference pair: a "simple" cross-site POST (`fetch(..., {mode: "no-cors"})` with text/plain, or a form)
reaches 127.0.0.1 without a CORS preflight, and a DNS-rebinding page reaches it under a name of its own.
Reached through `AccessGuard`, the ASGI middleware `molting.report.dashboard.create_app` wraps the app in.
Every request passes, in this order:

1. **Host**: the Host header names the address served on (loopback names 127.0.0.1, localhost and [::1]
   with the served port; with --allow-remote also the address given, or any IP address for 0.0.0.0/::).
   A rebinding page's requests carry its own name, so they get 400.
2. **Pages (GET/HEAD)** need the server's token, as Jupyter's do: the address printed at start carries
   `?token=…`; that request sets a cookie (HttpOnly, SameSite=Strict) and is redirected to the address
   without it. A page without the token or the cookie gets 403. /static/ (the style sheet and the
   scoring page's script, the same for everyone) needs no token.
3. **Writes (any other method)** need: an `Origin` that is the dashboard's own (or, without Origin,
   `Sec-Fetch-Site: same-origin`), else 403; the token in the `X-Molt-Token` header, which only a page
   the dashboard rendered knows (it is in a <meta> tag), else 403; and `Content-Type: application/json`,
   else 415. No answer carries CORS headers, so a browser never lets another origin send that header.

Every answer, refusals included, carries a Content-Security-Policy that allows no inline script and no
framing, X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer and X-Frame-Options: DENY. Tokens
are compared with `hmac.compare_digest`. The token lives in the server's memory only, never in RUNS_DIR.
"""

import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::")
TOKEN_HEADER = "X-Molt-Token"
SECURITY_HEADERS = {
    # Scripts and style sheets only from the dashboard itself (no inline script); the loss curve is a data:
    # image; fetch() only to the dashboard; forms only post to it; no page may frame it.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages carry the token
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def netloc(host: str, port: int) -> str:
    """host:port as it stands in a URL and in a Host header ([::1]:8321 for an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_host(header: str) -> tuple[str, int] | None:
    """(name, port) of a Host header (127.0.0.1:8321, localhost, [::1]:8321; no port means 80), or None."""
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
    else:
        name, _, port = header.partition(":")
        rest = f":{port}" if port else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name.lower(), int(rest[1:]) if rest else 80


def host_allowed(header: str, host: str, port: int) -> bool:
    """The Host header names this server: a loopback name or the served address, with the served port.
    Served on a wildcard address (0.0.0.0 or ::, only with --allow-remote), any IP address is accepted,
    since a rebinding page always comes under a name of its own."""
    split = _split_host(header)
    if split is None or split[1] != port:
        return False
    name = split[0]
    if name in LOOPBACK_NAMES or name == host.lower():
        return True
    return host in WILDCARD and _is_ip(name)


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


class AccessGuard:
    """ASGI middleware: refuses what is not the dashboard's own (see the module docstring) and adds
    SECURITY_HEADERS to every answer. `render_refusal(heading, message, status)` draws the page that a
    refused GET gets (API paths get JSON)."""

    def __init__(self, app: ASGIApp, host: str, port: int, token: str, render_refusal) -> None:
        self.app, self.host, self.port, self.token = app, host, port, token
        self.render_refusal = render_refusal
        self.cookie = f"molt_token_{port}"  # cookies are shared by every port of a host: one per server

    @property
    def url(self) -> str:
        """The address to open, token included (what `molt serve` prints)."""
        shown = "127.0.0.1" if self.host in WILDCARD else self.host
        return f"http://{netloc(shown, self.port)}/?token={self.token}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        refusal = self.refusal(Request(scope))
        await (refusal or self.app)(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> Response | None:
        """The answer that refuses `request`, or None to let it through."""
        api = request.url.path.startswith("/api/")

        def refuse(status: int, heading: str, message: str) -> Response:
            if api or request.method not in ("GET", "HEAD"):
                return JSONResponse({"error": message}, status_code=status)
            return self.render_refusal(heading, message, status)

        host = request.headers.get("host", "")
        if not host_allowed(host, self.host, self.port):
            return refuse(
                400,
                "Wrong address",
                f"this dashboard answers only at {netloc(self.host, self.port)} (or localhost), not {host!r}; "
                "a page under another name may be a DNS-rebinding attack.",
            )
        if request.method in ("GET", "HEAD"):
            if request.url.path.startswith("/static/"):
                return None
            given = request.query_params.get("token")
            if given is not None:
                if not _same(given, self.token):
                    return refuse(403, "Wrong token", self._token_help("this token is not this server's"))
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                answer = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
                answer.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
                return answer
            if not _same(request.cookies.get(self.cookie), self.token):
                return refuse(403, "Token needed", self._token_help("this browser has not given the token"))
            return None
        origin = request.headers.get("origin")
        if origin is not None:
            if origin != f"http://{host}":
                return refuse(403, "", f"a request from {origin} is refused: only the dashboard's own pages may write.")
        elif request.headers.get("sec-fetch-site") != "same-origin":
            return refuse(403, "", "a write needs the Origin header of the dashboard's own page.")
        if not _same(request.headers.get(TOKEN_HEADER), self.token):
            return refuse(
                403,
                "",
                f"a write needs this server's token in the {TOKEN_HEADER} header; if molt serve was restarted, open "
                "the address it printed (the token changes at every start).",
            )
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return refuse(415, "", f"expected Content-Type: application/json, not {media_type or 'none'!r}.")
        return None

    def _token_help(self, what: str) -> str:
        return (
            f"{what}. Open the address `molt serve` printed when it started (http://{netloc(self.host, self.port)}"
            "/?token=…); the token changes at every start."
        )
