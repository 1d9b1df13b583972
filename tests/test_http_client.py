"""The one HTTP client (:mod:`dnr_sweep.foundation.http`) against misbehaving peers, and the scan that keeps
it the only one.

:class:`Peer` is a raw TCP server on 127.0.0.1 that reads each request and answers with a script: a
drip-feed, an endless body, malformed or conflicting ``Content-Length``, a body longer than announced, HTML,
a stalled header, a 500, redirects. Each scenario runs under limits of a second or two; the peer's threads
end when the fixture closes it. ``data fetch`` and ``submit`` meet the same peers through the command line
in ``tests/test_data_fetch.py`` and ``tests/test_submit.py``.
"""

from __future__ import annotations

import ast
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dnr_sweep.foundation import http
from dnr_sweep.foundation.errors import NetworkError, UserError

REPO = Path(__file__).resolve().parents[1]

FAST = http.Limits(connect_s=1.0, total_s=1.0, max_bytes=1 << 20)


# --------------------------------------------------------------------------------------------------
# A misbehaving peer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Script = Callable[[socket.socket, Request, threading.Event], None]


@dataclass
class Peer:
    """``http://127.0.0.1:PORT``: every connection's request is read, recorded, and answered by ``script``
    (which may stall until ``stop`` is set: the fixture sets it at teardown)."""

    script: Script
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                request = read_request(self.request)
                if request is None:
                    return
                peer.requests.append(request)
                try:
                    peer.script(self.request, request, peer.stop)
                except OSError:  # the client hung up (as it should, past a deadline or a cap)
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def read_request(sock: socket.socket) -> Request | None:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return Request(method, path, headers, body)


def serving_peers() -> Iterator[Callable[[Script], Peer]]:
    """The body of a ``peer`` fixture: starts peers on demand, closes them all at teardown."""
    peers: list[Peer] = []

    def start(script: Script) -> Peer:
        peers.append(Peer(script))
        return peers[-1]

    yield start
    for p in peers:
        p.close()


@pytest.fixture
def peer():
    yield from serving_peers()


def head(status: str = "200 OK", headers: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def answer(status: str = "200 OK", body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Script:
    """A complete answer (``Content-Length`` from the body unless ``headers`` name one), then close."""
    given = headers if headers is not None else []
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in given):
        given = [*given, ("Content-Length", str(len(body)))]

    def script(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        sock.sendall(head(status, given) + body)

    return script


def json_answer(data: object, status: str = "200 OK") -> Script:
    return answer(status, json.dumps(data).encode(), [("Content-Type", "application/json")])


def drip(body: bytes, every_s: float = 0.2, content_type: str = "application/octet-stream") -> Script:
    """The announced body, one byte every ``every_s``."""

    def script(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        sock.sendall(head("200 OK", [("Content-Length", str(len(body))), ("Content-Type", content_type)]))
        for i in range(len(body)):
            if stop.wait(every_s):
                return
            sock.sendall(body[i : i + 1])

    return script


def endless(chunk: bytes = b"x" * 65536) -> Script:
    """No length, a body that never ends (until the client hangs up)."""

    def script(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        sock.sendall(head("200 OK", [("Content-Type", "application/octet-stream")]))
        while not stop.is_set():
            sock.sendall(chunk)

    return script


def stalled(sock: socket.socket, request: Request, stop: threading.Event) -> None:
    """Accepts, reads the request, never answers."""
    stop.wait(30)


def longer_than_announced(sock: socket.socket, request: Request, stop: threading.Event) -> None:
    sock.sendall(head("200 OK", [("Content-Length", "10")]) + b"0123456789" + b"and more, unannounced")
    stop.wait(30)  # keeps the connection open: the extra bytes are what the client must notice


def chunked(parts: list[bytes]) -> Script:
    def script(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        sock.sendall(head("200 OK", [("Transfer-Encoding", "chunked")]) + body)

    return script


def redirect(location: str, status: str = "302 Found") -> Script:
    return answer(status, b"", [("Location", location), ("Content-Length", "0")])


def routes(table: dict[str, Script]) -> Script:
    """Answer by path (404 for the rest)."""

    def script(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        table.get(request.path, answer("404 Not Found", b"no such thing"))(sock, request, stop)

    return script


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fails(kind: str, method: str, url: str, **kwargs) -> http.HttpError:
    kwargs.setdefault("limits", FAST)
    with pytest.raises(http.HttpError) as caught:
        http.request(method, url, **kwargs)
    assert caught.value.kind == kind, (caught.value.kind, str(caught.value))
    assert isinstance(caught.value, NetworkError) and isinstance(caught.value, UserError)
    return caught.value


# --------------------------------------------------------------------------------------------------
# What a peer may not do


def test_a_well_behaved_answer_comes_back_whole(peer):
    p = peer(answer(body=b"hello"))
    response = http.request("GET", p.url + "/x?a=1", limits=FAST)
    assert (response.status, response.body) == (200, b"hello")
    assert p.requests[0].path == "/x?a=1" and p.requests[0].headers["connection"] == "close"
    p = peer(chunked([b"he", b"llo"]))
    assert http.request("GET", p.url, limits=FAST).body == b"hello"
    p = peer(json_answer({"a": [1, 2]}))
    assert http.request("GET", p.url, limits=FAST, expect_json=True).data == {"a": [1, 2]}


def test_a_drip_feed_is_cut_off_at_the_deadline_not_per_read(peer):
    p = peer(drip(b"x" * 100, every_s=0.2))  # each read gets a byte well within any per-read timeout
    error = fails("timeout", "GET", p.url)
    assert "no complete answer within 1 s" in str(error) and 0 < error.received < 100


def test_an_endless_body_is_cut_off_at_the_cap(peer):
    p = peer(endless())
    error = fails("too_large", "GET", p.url, limits=http.Limits(connect_s=1, total_s=2, max_bytes=300_000))
    assert "longer than the 300,000 bytes expected" in str(error)


def test_a_stalled_header_is_cut_off_at_the_deadline(peer):
    p = peer(stalled)
    assert "within 1 s" in str(fails("timeout", "GET", p.url))
    error = fails("timeout", "GET", p.url, limits=http.Limits(connect_s=1, total_s=2, max_bytes=10, idle_s=0.5))
    assert "no byte for 0.5 s" in str(error)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ([("Content-Length", "abc")], "Content-Length 'abc' is not a byte count"),
        ([("Content-Length", "-5")], "Content-Length '-5' is not a byte count"),
        ([("Content-Length", "5, 5")], "Content-Length '5, 5' is not a byte count"),
        ([("Content-Length", "5"), ("Content-Length", "7")], "conflicting Content-Length headers ('5', '7')"),
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], "both Content-Length and Transfer-Encoding"),
    ],
)  # fmt: skip
def test_malformed_or_conflicting_lengths_are_refused(peer, headers, fragment):
    p = peer(answer(body=b"hello", headers=headers))
    assert fragment in str(fails("protocol", "GET", p.url))


def test_equal_duplicate_lengths_are_one_length(peer):
    p = peer(answer(body=b"hello", headers=[("Content-Length", "5"), ("Content-Length", "5")]))
    assert http.request("GET", p.url, limits=FAST).body == b"hello"


def test_a_body_longer_than_announced_or_than_the_cap_is_refused(peer):
    p = peer(longer_than_announced)
    assert "longer than the 10 bytes its Content-Length announced" in str(fails("protocol", "GET", p.url))
    p = peer(answer(body=b"x" * 100))
    small = http.Limits(connect_s=1, total_s=1, max_bytes=50)
    assert "announces 100 bytes, more than the 50 expected" in str(fails("too_large", "GET", p.url, limits=small))
    p = peer(chunked([b"x" * 40, b"y" * 40]))
    assert "longer than the 50 bytes" in str(fails("too_large", "GET", p.url, limits=small))


def test_a_body_shorter_than_announced_is_refused(peer):
    p = peer(answer(body=b"abc", headers=[("Content-Length", "10")]))
    assert "broke off after 3 of 10 announced bytes" in str(fails("protocol", "GET", p.url))


def test_json_apis_refuse_html_and_non_json(peer):
    p = peer(answer(body=b"<html><body>hi</body></html>", headers=[("Content-Type", "text/html; charset=utf-8")]))
    error = fails("not_json", "GET", p.url, expect_json=True)
    assert "text/html" in str(error) and error.content_type.startswith("text/html")
    p = peer(answer(body=b"{not json", headers=[("Content-Type", "application/json")]))
    assert "not JSON" in str(fails("not_json", "GET", p.url, expect_json=True))
    p = peer(answer(body=b"[" * 100_000 + b"]" * 100_000, headers=[("Content-Type", "application/json")]))
    fails("not_json", "GET", p.url, expect_json=True)  # nesting past the recursion limit: no RecursionError


def test_a_status_outside_ok_is_an_error_with_the_peers_text_as_one_clean_line(peer):
    p = peer(answer("500 Internal Server Error", b"Traceback\n  boom\x1b[2J\x07 line"))
    error = fails("status", "GET", p.url)
    assert (error.status, error.reason) == (500, "Internal Server Error") and "HTTP 500" in str(error)
    assert error.text == "Traceback boom line"  # control characters and terminal escapes gone
    assert http.request("GET", p.url, limits=FAST, ok=(200, 500)).status == 500


def test_not_http_at_all_is_a_protocol_error(peer):
    p = peer(lambda sock, request, stop: sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"))
    assert "not a well-formed HTTP answer" in str(fails("protocol", "GET", p.url))


def test_a_closed_port_is_unreachable_at_once():
    error = fails("unreachable", "GET", f"http://127.0.0.1:{closed_port()}/x")
    assert "Connection refused" in str(error)


# --------------------------------------------------------------------------------------------------
# Redirects: only where allowed, never off this machine or down to http


def test_redirects_are_answers_unless_the_caller_follows_them(peer):
    target = peer(answer(body=b"moved here"))
    p = peer(redirect(target.url + "/there"))
    error = fails("status", "GET", p.url)
    assert error.status == 302 and error.location == target.url + "/there"
    assert http.request("GET", p.url, limits=FAST, follow_redirects=3).body == b"moved here"
    loop = peer(redirect("/again"))
    assert "more than 3 redirects" in str(fails("protocol", "GET", loop.url, follow_redirects=3))


@pytest.mark.parametrize("location", ["http://10.255.255.1/x", "http://example.invalid/x", "//203.0.113.9/x"])
def test_a_redirect_off_this_machine_is_refused_without_connecting(peer, location):
    p = peer(redirect(location))
    error = fails("protocol", "GET", p.url, follow_redirects=3)
    assert "redirects from this machine to another host" in str(error)
    assert len(p.requests) == 1


def test_credentials_stay_with_their_origin(peer):
    other = peer(answer(body=b"ok"))
    p = peer(redirect(other.url.replace("127.0.0.1", "localhost") + "/file"))
    http.request("GET", p.url, limits=FAST, follow_redirects=1, headers={"Authorization": "Bearer sekrit-token"})
    assert p.requests[0].headers["authorization"] == "Bearer sekrit-token"
    assert "authorization" not in other.requests[0].headers  # another origin: not sent
    same = peer(routes({"/a": redirect("/b"), "/b": answer(body=b"ok")}))
    url = same.url.replace("http://", "http://me:pa55word@") + "/a"
    assert http.request("GET", url, limits=FAST, follow_redirects=1).body == b"ok"
    assert [r.headers["authorization"].startswith("Basic ") for r in same.requests] == [True, True]


# --------------------------------------------------------------------------------------------------
# Secrets never shown


def test_userinfo_and_query_values_are_redacted_and_userinfo_is_sent_as_basic_auth(peer):
    assert http.redact("https://me:pw@host:8443/a/b?token=abc&x=1#frag") == "https://***@host:8443/a/b?token=***&x=***"
    assert http.redact("http://127.0.0.1:8265") == "http://127.0.0.1:8265"
    p = peer(answer("401 Unauthorized", b"who are you"))
    url = p.url.replace("http://", "http://alice:s3cret-pass@") + "/f?sig=s3cret-sig"
    error = fails("status", "GET", url)
    for secret in ("s3cret-pass", "s3cret-sig", "alice"):
        assert secret not in str(error)
    assert p.requests[0].headers["authorization"].startswith("Basic ")


def test_a_peer_that_echoes_the_token_back_does_not_get_it_shown(peer):
    def echo(sock: socket.socket, request: Request, stop: threading.Event) -> None:
        text = f"bad token {request.headers['authorization']} sent".encode()
        sock.sendall(head("403 Forbidden", [("Content-Length", str(len(text)))]) + text)

    p = peer(echo)
    error = fails("status", "GET", p.url, headers={"Authorization": "Bearer 0123456789abcdef"})
    assert "0123456789abcdef" not in error.text + str(error) and error.text == "bad token *** sent"


def test_environment_proxies_are_used_except_for_loopback(peer, monkeypatch):
    proxy = peer(answer(body=b"via proxy"))
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    direct = peer(answer(body=b"direct"))
    assert http.request("GET", direct.url + "/a", limits=FAST).body == b"direct"  # loopback: never proxied
    assert http.request("GET", "http://mirror.example/a.tgz", limits=FAST).body == b"via proxy"
    assert proxy.requests[0].path == "http://mirror.example:80/a.tgz"


# --------------------------------------------------------------------------------------------------
# Closed by construction: no other module of dnr_sweep speaks HTTP itself

#: modules that open HTTP connections; only the client may import them
HTTP_MODULES = ("urllib.request", "urllib.error", "http.client", "http.server", "requests", "urllib3", "httpx",
                "aiohttp", "websocket", "websockets", "tornado", "ray.job_submission", "ray.dashboard")  # fmt: skip
#: socket calls that open a connection or a listener
SOCKET_CALLS = ("create_connection", "socket", "create_server", "socketpair", "fromfd")
CLIENT = "dnr_sweep/foundation/http.py"
#: modules allowed one raw socket, with the reason
RAW_SOCKET_OK = {"dnr_sweep/sweep/cluster.py": "a TCP probe of the GCS port (gRPC, not HTTP) before ray.init"}


def _bypasses(path: Path, relative: str) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("__import__",):
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in HTTP_MODULES):
                found.append(f"{relative}:{node.lineno}: imports {name}")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "socket"
                and node.attr in SOCKET_CALLS and relative not in RAW_SOCKET_OK):  # fmt: skip
            found.append(f"{relative}:{node.lineno}: socket.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "socket" and relative not in RAW_SOCKET_OK:
            found += [f"{relative}:{node.lineno}: from socket import {a.name}" for a in node.names
                      if a.name in SOCKET_CALLS]  # fmt: skip
    return found


def http_bypasses(root: Path, package: str, client: str) -> list[str]:
    """Every place in ``root/package`` outside ``client`` that could speak HTTP on its own."""
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative != client:
            problems += _bypasses(path, relative)
    return problems


def test_every_http_request_goes_through_the_one_client():
    assert http_bypasses(REPO, "dnr_sweep", CLIENT) == []


def test_the_scan_catches_each_way_around_the_client(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "client.py").write_text("import http.client\nimport socket\nsocket.create_connection(('h', 1))\n")
    (package / "a.py").write_text("import urllib.request\n")
    (package / "b.py").write_text("from http import client\n")
    (package / "c.py").write_text("def f():\n    import requests\n")
    (package / "d.py").write_text("import socket\ns = socket.socket()\n")
    (package / "e.py").write_text("import importlib\nm = importlib.import_module('aiohttp')\n")
    (package / "f.py").write_text("from ray.job_submission import JobSubmissionClient\n")
    (package / "g.py").write_text("import socket, urllib.parse\nhost = socket.gethostname()\n")  # fine
    assert http_bypasses(tmp_path, "pkg", "pkg/client.py") == [
        "pkg/a.py:1: imports urllib.request",
        "pkg/b.py:1: imports http.client",
        "pkg/c.py:2: imports requests",
        "pkg/d.py:2: socket.socket",
        "pkg/e.py:2: imports aiohttp",
        "pkg/f.py:1: imports ray.job_submission",
        "pkg/f.py:1: imports ray.job_submission.JobSubmissionClient",
    ]
