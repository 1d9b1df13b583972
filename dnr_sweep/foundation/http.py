"""The one HTTP client of dnr-sweep: every request it makes goes through here, with a deadline and a byte cap.

Two callers: ``data fetch`` (:mod:`dnr_sweep.data.fetch`) and the Ray job API (:mod:`dnr_sweep.sweep.jobs`).
A peer is trusted with nothing beyond the connection:

- time: connect within ``connect_s``, each read within ``idle_s``, the whole exchange within ``total_s``
  (a watchdog shuts the socket, so a peer dripping bytes is cut off at the deadline);
- size: one ``Content-Length``, a body above ``max_bytes`` or longer than announced refused;
- kind: ``expect_json`` wants ``application/json`` that parses;
- redirects: only where a caller allows them, never https to http or off loopback, credentials never
  to another origin;
- secrets: userinfo, ``Authorization`` and query values never appear in a message (:func:`redact`).

Failures are :class:`HttpError`, a :class:`~dnr_sweep.foundation.errors.NetworkError`. Standard library only.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import dataclasses
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterator, Mapping
from email.message import Message
from typing import Any

from dnr_sweep.foundation.errors import NetworkError

__all__ = ["HttpError", "Limits", "Response", "Stream", "is_loopback", "redact", "request", "stream"]

_CHUNK = 1 << 16
_ERROR_BODY = 1 << 16  # bytes of an error answer kept to quote (after scrubbing)
_EXTRA_GRACE_S = 0.25  # after the announced body: wait this long for the peer's close (or its extra bytes)
_REDIRECTS = (301, 302, 303, 307, 308)
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")
_USER_AGENT = "dnr-sweep"


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long and how much one exchange may take: seconds to connect, for the whole exchange and (each
    read, None: up to the deadline) without a byte; the most body bytes accepted."""

    connect_s: float
    total_s: float
    max_bytes: int
    idle_s: float | None = None

    def __post_init__(self) -> None:
        if not (self.connect_s > 0 and self.total_s > 0 and self.max_bytes >= 0):
            raise ValueError(f"limits must be positive: {self}")


class HttpError(NetworkError):
    """One exchange failed. ``kind``: ``"unreachable"`` (no connection), ``"timeout"`` (a deadline),
    ``"status"`` (an HTTP status outside ``ok``; ``status``, ``reason``, ``text`` hold the answer),
    ``"protocol"`` (not well-formed HTTP, a body longer than announced, a refused redirect), ``"too_large"``
    (over the cap), ``"not_json"``. ``url`` is redacted; every text is scrubbed of secrets."""

    def __init__(self, kind: str, url: str, detail: str, *, status: int | None = None, reason: str = "",
                 text: str = "", content_type: str = "", received: int = 0, location: str = "") -> None:  # fmt: skip
        self.kind, self.url, self.detail = kind, url, detail
        self.status, self.reason, self.text, self.content_type = status, reason, text, content_type
        self.received, self.location = received, location
        super().__init__(f"{url}: {detail}")


@dataclasses.dataclass
class Response:
    """A whole answer: the final URL (redacted), status, headers, body, and its JSON when asked for."""

    url: str
    status: int
    headers: Message
    body: bytes
    data: Any = None


# --------------------------------------------------------------------------------------------------
# URLs and secrets


def redact(url: str) -> str:
    """``url`` as it may be shown: no userinfo (``***@host``), every query value ``***``, no fragment."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return "<an unreadable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{p.split('=', 1)[0]}=***" if "=" in p else "***" for p in parts.query.split("&") if p)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _printable(text: str, limit: int = 300) -> str:
    """A peer's text as one short line: control characters (terminal escapes) replaced, cut at ``limit``."""
    line = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", text)  # terminal escape sequences (colours, clear screen)
    line = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", line).split())
    return line if len(line) <= limit else line[:limit] + "..."


@dataclasses.dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent
    auth: str | None  # a Basic header from the userinfo
    shown: str  # redacted

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host.lower(), self.port


def _parse(url: str) -> _Url:
    shown = redact(url)
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise HttpError("protocol", shown, f"not a usable URL ({_printable(str(exc))})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("protocol", shown, "not an http:// or https:// URL with a host")
    auth = None
    if parts.username is not None or parts.password is not None:
        pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if re.search(r"[\x00-\x20\x7f]", target):
        raise HttpError("protocol", shown, "the URL holds spaces or control characters; quote them (%20)")
    return _Url(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target, auth, shown)


class _Secrets:
    """The values that must never be shown: scrubbed from whatever a peer sends back."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.values: list[str] = []
        for name, value in headers.items():
            if name.lower() in _SECRET_HEADERS and value:
                found = [value, value.split(" ", 1)[-1]]
                if value.startswith("Basic "):
                    with contextlib.suppress(ValueError):
                        found += base64.b64decode(value[6:]).decode(errors="replace").split(":", 1)
                self.values += [v for v in found if len(v) >= 4]  # shorter ones would blank out common text
        self.values.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text


def _proxy(url: _Url) -> tuple[str, int, dict[str, str]] | None:
    """The environment's proxy for ``url`` (host, port, its auth header), or None; never for loopback."""
    if is_loopback(url.host) or urllib.request.proxy_bypass(url.host):
        return None
    proxy = urllib.request.getproxies().get(url.scheme)
    if not proxy:
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if parts.username is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return parts.hostname or "", parts.port or 8080, headers


# --------------------------------------------------------------------------------------------------
# One exchange


class _Watchdog:
    """Shuts the socket down at the deadline: a blocked read returns, whatever the peer does."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):  # the plain socket's shutdown, also under TLS (no TLS state touched)
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@dataclasses.dataclass
class Stream:
    """An answer whose headers are in and checked; iterate for the body's chunks (each checked against the
    cap and the deadline). ``length``: the announced byte count, or None; ``received``: bytes so far."""

    url: str
    status: int
    headers: Message
    length: int | None
    received: int = 0
    _exchange: _Exchange | None = dataclasses.field(default=None, repr=False)

    def __iter__(self) -> Iterator[bytes]:
        assert self._exchange is not None
        yield from self._exchange.body(self)


class _Exchange:
    """One connection, one request, one answer, under one deadline."""

    def __init__(self, url: _Url, limits: Limits, deadline: float, secrets: _Secrets) -> None:
        self.url, self.limits, self.deadline, self.secrets = url, limits, deadline, secrets
        self.conn: http.client.HTTPConnection | None = None
        self.sock: socket.socket | None = None
        self.watchdog: _Watchdog | None = None
        self.response: http.client.HTTPResponse | None = None

    # the failures, worded once
    def error(self, kind: str, detail: str, **extra: Any) -> HttpError:
        return HttpError(kind, self.url.shown, self.secrets.scrub(detail), **extra)

    def late(self, received: int = 0) -> HttpError:
        return self.error("timeout", f"no complete answer within {self.limits.total_s:g} s "
                                     f"({received:,} body bytes received)", received=received)  # fmt: skip

    def broken(self, exc: BaseException, received: int = 0) -> HttpError:
        if (self.watchdog is not None and self.watchdog.fired) or time.monotonic() >= self.deadline:
            return self.late(received)
        if isinstance(exc, TimeoutError):
            idle = self.limits.idle_s
            if idle is None:
                return self.late(received)
            return self.error(
                "timeout", f"no byte for {idle:g} s ({received:,} body bytes received)", received=received
            )
        if isinstance(exc, http.client.HTTPException):
            what = _printable(str(exc) or type(exc).__name__, 120)
            return self.error("protocol", f"not a well-formed HTTP answer ({type(exc).__name__}: {what})",
                              received=received)  # fmt: skip
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return self.error("protocol", f"the connection broke off ({_printable(text, 120)}) after {received:,} "
                                      "body bytes", received=received)  # fmt: skip

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.late()
        return left

    def open(self, method: str, headers: dict[str, str], data: bytes | None) -> http.client.HTTPResponse:
        url, timeout = self.url, min(self.limits.connect_s, self.remaining())
        proxy = _proxy(url)
        target = url.target
        try:
            if url.scheme == "https":
                context = ssl.create_default_context()
                host, port = (proxy[0], proxy[1]) if proxy else (url.host, url.port)
                self.conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
                if proxy:
                    self.conn.set_tunnel(url.host, url.port, headers=proxy[2])
            elif proxy:
                self.conn = http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout)
                host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
                target = f"http://{host}:{url.port}{url.target}"
                headers = {**headers, **proxy[2]}
            else:
                self.conn = http.client.HTTPConnection(url.host, url.port, timeout=timeout)
            self.conn.connect()
        except socket.gaierror as exc:
            raise self.error("unreachable", f"the host name does not resolve ({exc.strerror})") from None
        except TimeoutError:
            raise self.error("unreachable", f"no connection within {timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise self.error(
                "protocol", f"its TLS certificate is not trusted ({_printable(exc.verify_message)})"
            ) from None
        except ssl.SSLError as exc:
            raise self.error("protocol", f"the TLS handshake failed ({_printable(exc.reason or str(exc))})") from None
        except OSError as exc:  # refused, unreachable network, a proxy's refusal of the tunnel
            raise self.error("unreachable", _printable(exc.strerror or str(exc) or type(exc).__name__)) from None
        self.sock = self.conn.sock
        self.sock.settimeout(min(self.limits.idle_s or self.limits.total_s, self.remaining()))
        self.watchdog = _Watchdog(self.sock, self.deadline)
        try:
            self.conn.request(method, target, body=data, headers=headers)
            self.response = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise self.broken(exc) from None
        return self.response

    def length(self, response: http.client.HTTPResponse) -> int | None:
        """The announced body length, checked (None: chunked or until the peer closes)."""
        values = [v.strip() for v in response.msg.get_all("Content-Length") or []]
        if not values:
            return None
        if len(set(values)) > 1:
            shown = ", ".join(repr(_printable(v, 30)) for v in values[:4])
            raise self.error("protocol", f"its answer has conflicting Content-Length headers ({shown})")
        if not (values[0].isascii() and values[0].isdigit()):
            raise self.error(
                "protocol", f"its answer's Content-Length {_printable(values[0], 40)!r} is not a byte count"
            )
        if response.msg.get_all("Transfer-Encoding"):
            raise self.error("protocol", "its answer has both Content-Length and Transfer-Encoding")
        return int(values[0])

    def body(self, answer: Stream) -> Iterator[bytes]:
        response, cap = self.response, self.limits.max_bytes
        assert response is not None and response.fp is not None
        fp = response.fp
        try:
            while True:
                self.remaining()
                want = min(_CHUNK, cap + 1 - answer.received)
                if answer.length is not None:
                    want = min(want, answer.length - answer.received)
                    if want == 0:
                        self.nothing_more(fp, answer)
                        return
                    chunk = fp.read1(want)
                    if not chunk:
                        if self.watchdog is not None and self.watchdog.fired:
                            raise self.late(answer.received)
                        raise self.error("protocol", f"the answer broke off after {answer.received:,} of "
                                                     f"{answer.length:,} announced bytes", received=answer.received)  # fmt: skip
                else:
                    chunk = response.read1(want) if response.chunked else fp.read1(want)
                    if not chunk:
                        if self.watchdog is not None and self.watchdog.fired:
                            raise self.late(answer.received)
                        return
                answer.received += len(chunk)
                if answer.received > cap:
                    raise self.error("too_large", f"its answer is longer than the {cap:,} bytes expected",
                                     received=answer.received)  # fmt: skip
                yield chunk
        except HttpError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self.broken(exc, answer.received) from None

    def nothing_more(self, fp: Any, answer: Stream) -> None:
        """After the announced bytes the peer must close (we asked it to), not send more."""
        assert self.sock is not None
        try:
            self.sock.settimeout(min(_EXTRA_GRACE_S, max(self.deadline - time.monotonic(), 0.001)))
            extra = fp.read1(1)
        except (OSError, ValueError):  # a peer that keeps the connection open, or resets it: nothing more
            return
        if extra:
            raise self.error("protocol", f"its answer is longer than the {answer.length:,} bytes its "
                                          "Content-Length announced", received=answer.received + len(extra))  # fmt: skip

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        with contextlib.suppress(OSError):
            if self.response is not None:
                self.response.close()
            if self.conn is not None:
                self.conn.close()


def _error_text(exchange: _Exchange, response: http.client.HTTPResponse, length: int | None) -> str:
    """An error answer's text (its first :data:`_ERROR_BODY` bytes) as one scrubbed line; best effort, within
    the deadline (a traceback's last line, where a server says what went wrong, is kept)."""
    want, data = _ERROR_BODY if length is None else min(_ERROR_BODY, length), b""
    try:
        while len(data) < want:
            chunk = response.read1(want - len(data)) if response.chunked else response.fp.read1(want - len(data))
            if not chunk:
                break
            data += chunk
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        pass
    return exchange.secrets.scrub(_printable(data.decode("utf-8", errors="replace"), _ERROR_BODY))


def _next_url(exchange: _Exchange, response: http.client.HTTPResponse, current: _Url) -> _Url:
    """Where a redirect points, if this client may follow it there."""
    locations = response.msg.get_all("Location") or []
    if len(locations) != 1:
        raise exchange.error("protocol", f"HTTP {response.status} without one Location header")
    absolute = urllib.parse.urljoin(f"{current.scheme}://{current.host}:{current.port}{current.target}",
                                    locations[0].strip())  # fmt: skip
    target = _parse(absolute)
    if current.scheme == "https" and target.scheme == "http":
        raise exchange.error("protocol", f"it redirects from https to plain http ({target.shown}); refused",
                             location=target.shown)  # fmt: skip
    if is_loopback(current.host) and not is_loopback(target.host):
        raise exchange.error("protocol", f"it redirects from this machine to another host ({target.shown}); "
                                         "refused: give that address yourself if it is meant", location=target.shown)  # fmt: skip
    return target


@contextlib.contextmanager
def stream(method: str, url: str, *, limits: Limits, headers: Mapping[str, str] | None = None,
           data: bytes | None = None, ok: Collection[int] = (200,), follow_redirects: int = 0,
           expect_json: bool = False) -> Iterator[Stream]:  # fmt: skip
    """Send one request and yield the checked answer, its body still to be read (downloads).

    ``follow_redirects``: how many redirects a ``GET`` may follow (0: a redirect is an answer like any
    other). Raises :class:`HttpError`; nothing of the exchange outlives the ``with``.
    """
    deadline = time.monotonic() + limits.total_s
    current = _parse(url)
    caller = dict(headers or {})
    for hop in range(follow_redirects + 1):
        sent = {"User-Agent": _USER_AGENT, "Accept": "application/json" if expect_json else "*/*",
                "Accept-Encoding": "identity", "Connection": "close", **caller}  # fmt: skip
        if current.auth and "Authorization" not in sent:
            sent["Authorization"] = current.auth
        exchange = _Exchange(current, limits, deadline, _Secrets(sent))
        try:
            response = exchange.open(method, sent, data)
            length = exchange.length(response)
            status = response.status
            if status in _REDIRECTS and method == "GET" and follow_redirects:
                if hop == follow_redirects:
                    raise exchange.error("protocol", f"more than {follow_redirects} redirects")
                target = _next_url(exchange, response, current)
                if target.origin != current.origin:
                    caller = {k: v for k, v in caller.items() if k.lower() not in _SECRET_HEADERS}
                elif target.auth is None:  # the same origin keeps the URL's credentials
                    target = dataclasses.replace(target, auth=current.auth)
                current = target
                continue
            if status not in ok:
                moved = response.msg.get("Location", "") if status in _REDIRECTS else ""
                raise exchange.error(
                    "status", f"HTTP {status} {_printable(response.reason, 80)}", status=status,
                    reason=_printable(response.reason, 80), text=_error_text(exchange, response, length),
                    content_type=_printable(response.msg.get("Content-Type", ""), 80),
                    location=redact(urllib.parse.urljoin(url, moved)) if moved else "",
                )  # fmt: skip
            if length is not None and length > limits.max_bytes:
                raise exchange.error("too_large", f"it announces {length:,} bytes, more than the "
                                                  f"{limits.max_bytes:,} expected")  # fmt: skip
            content_type = response.msg.get("Content-Type", "")
            if expect_json and not _json_type(content_type):
                raise exchange.error("not_json", f"it answered {_printable(content_type, 80) or 'no Content-Type'}, "
                                                 "not application/json", content_type=_printable(content_type, 80))  # fmt: skip
            yield Stream(current.shown, status, response.msg, length, _exchange=exchange)
            return
        finally:
            exchange.close()


def request(method: str, url: str, *, limits: Limits, headers: Mapping[str, str] | None = None,
            data: bytes | None = None, ok: Collection[int] = (200,), follow_redirects: int = 0,
            expect_json: bool = False) -> Response:  # fmt: skip
    """One whole exchange (the body in memory, at most ``limits.max_bytes``); with ``expect_json`` the body
    parsed into ``Response.data``. Raises :class:`HttpError`."""
    with stream(method, url, limits=limits, headers=headers, data=data, ok=ok, follow_redirects=follow_redirects,
                expect_json=expect_json) as answer:  # fmt: skip
        body = b"".join(answer)
    result = Response(answer.url, answer.status, answer.headers, body)
    if expect_json:
        try:
            text = codecs.decode(body, "utf-8")
            result.data = json.loads(text)
        except (ValueError, RecursionError):
            raise HttpError("not_json", answer.url, f"its answer is not JSON ({_printable(repr(body[:60]), 80)})",
                            content_type=answer.headers.get("Content-Type", "")) from None  # fmt: skip
    return result
