"""The WebSocket Origin check: an Origin is accepted only when its scheme, host and port are exactly
those of the page the server itself serves (the request's Host, over http or https as the connection
is), or of an entry of CSRF_TRUSTED_ORIGINS. Channels' AllowedHostsOriginValidator compares the host
alone, so a page on another port or scheme of an allowed host could open sockets with the cookies."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str) -> Origin | None:
    try:
        parts = urlsplit(value.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def own_origin(scope: dict) -> Origin | None:
    """The origin of the page that opens this socket when it is served by this server."""
    host = _header(scope, b"host")
    domain, _ = split_domain_port(host)
    if not host or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") == "wss"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:  # behind a TLS proxy (BEHIND_TLS_PROXY), which says so in this header
        name = proxy_header[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        secure = secure or _header(scope, name).split(",")[0].strip().lower() == proxy_header[1]
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def origin_allowed(scope: dict) -> bool:
    origin = parse_origin(_header(scope, b"origin"))
    if origin is None:
        return False
    trusted = {parse_origin(entry) for entry in settings.CSRF_TRUSTED_ORIGINS} - {None}
    return origin == own_origin(scope) or origin in trusted


class SameOriginValidator:
    """ASGI middleware: refuses (HTTP 403 on the handshake) WebSockets from any other origin."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
