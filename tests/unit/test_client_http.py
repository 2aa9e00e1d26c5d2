"""TrackingClient over real HTTP (a tiny stdlib server): errors, streams, uploads, downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from latticehub.client import TrackingAPIError, TrackingClient

RUN = "c" * 32


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Server:
    """Answers ``(method, path)`` from :attr:`routes`: ``handler -> (status, headers, body)``.

    A body that is a list is sent chunked, one chunk per item.
    """

    url: str
    routes: dict[tuple[str, str], Callable[[Seen], tuple]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def client(self, timeout: float = 5) -> TrackingClient:
        return TrackingClient(self.url, "tok", timeout=timeout)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            path = urllib.parse.unquote(parts.path.split("/api/v1", 1)[-1])
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen = Seen(self.command, path, urllib.parse.parse_qs(parts.query), headers,
                        self.rfile.read(length))  # fmt: skip
            state.seen.append(seen)
            route = state.routes.get((self.command, seen.path))
            status, headers, body = route(seen) if route else (404, {}, b"{}")
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if isinstance(body, list):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_port}/services/experiments"
    yield state
    httpd.shutdown()
    httpd.server_close()


def answer(status: int, payload, headers: dict | None = None) -> Callable[[Seen], tuple]:
    body = payload if isinstance(payload, bytes | list) else json.dumps(payload).encode()
    return lambda _seen: (status, {"Content-Type": "application/json", **(headers or {})}, body)


@pytest.mark.parametrize("chunked", [False, True])
def test_the_services_error_body_is_read_plain_or_chunked(server, chunked):
    error = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "config: bad L"})
    server.routes[("POST", "/jobs")] = answer(400, [error.encode()] if chunked else error.encode())
    with pytest.raises(TrackingAPIError) as caught:
        server.client().submit_job("p", config={"L": 7})
    assert (caught.value.status, caught.value.code) == (400, "INVALID_PARAMETER_VALUE")
    assert caught.value.message == "config: bad L" and not caught.value.transient
    assert json.loads(server.seen[0].body)["config"] == {"L": 7}


def test_a_proxy_page_is_an_http_error_and_a_login_page_a_bad_answer(server):
    server.routes[("GET", f"/runs/{RUN}")] = answer(502, b"<html>Bad Gateway</html>")
    with pytest.raises(TrackingAPIError) as caught:
        server.client().get_run(RUN)
    assert (caught.value.code, caught.value.message, caught.value.transient) == (
        "HTTP_ERROR", "Bad Gateway", True)  # fmt: skip
    server.routes[("GET", f"/runs/{RUN}")] = answer(200, b"<html>log in</html>")
    with pytest.raises(TrackingAPIError, match="not JSON") as caught:
        server.client().get_run(RUN)
    assert caught.value.code == "BAD_ANSWER"


def test_unreachable_is_an_oserror():
    from tests.hub import free_port

    client = TrackingClient(f"http://127.0.0.1:{free_port()}/s", "tok", timeout=2)
    with pytest.raises(OSError):
        client.get_run(RUN)


def test_upload_streams_the_file_with_its_size_and_hash(server, tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "ckpt.pt").write_bytes(data)
    server.routes[("PUT", f"/runs/{RUN}/artifacts/model/ckpt v1.pt")] = answer(
        201, {"path": "model/ckpt v1.pt", "size": len(data)}
    )
    got = server.client().upload_artifact(RUN, "model/ckpt v1.pt", tmp_path / "ckpt.pt")
    assert got["size"] == len(data)
    (seen,) = server.seen
    assert seen.body == data and seen.headers["content-length"] == str(len(data))
    assert seen.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert seen.headers["authorization"] == "token tok"


@pytest.mark.parametrize("damaged", [False, True])
def test_download_is_checked_and_atomic(server, tmp_path, damaged):
    data = b"weights" * 100_000
    digest = hashlib.sha256(b"other" if damaged else data).hexdigest()
    server.routes[("GET", f"/runs/{RUN}/artifacts/model/checkpoint.pt")] = answer(
        200, [data[:300_000], data[300_000:]], {"X-Content-SHA256": digest}
    )
    target = tmp_path / "out" / "checkpoint.pt"
    if damaged:
        with pytest.raises(TrackingAPIError, match="damaged") as caught:
            server.client().download_artifact(RUN, "model/checkpoint.pt", target)
        assert caught.value.code == "BAD_ANSWER"
        assert list(target.parent.iterdir()) == []  # neither the target nor a temporary
    else:
        assert server.client().download_artifact(RUN, "model/checkpoint.pt", target) == target
        assert target.read_bytes() == data and len(list(target.parent.iterdir())) == 1


def test_download_artifacts_keeps_paths_and_skips_escapes(server, tmp_path):
    items = [{"path": "summary.json"}, {"path": "plots/a.png"}, {"path": "../evil"}]
    server.routes[("GET", f"/runs/{RUN}/artifacts")] = answer(200, {"items": items})
    for name in ("summary.json", "plots/a.png", "../evil"):
        server.routes[("GET", f"/runs/{RUN}/artifacts/{name}")] = answer(200, name.encode())
    written = server.client().download_artifacts(RUN, tmp_path / "dest")
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in written) == [
        "plots/a.png", "summary.json"]  # fmt: skip
    assert not (tmp_path / "evil").exists()


def test_download_a_registered_version(server, tmp_path):
    server.routes[("GET", "/projects/7/artifacts/flow/best/file")] = answer(200, b"blob")
    path = server.client().download_version(7, "flow", "best", tmp_path / "flow.pt")
    assert path.read_bytes() == b"blob"


def test_a_long_poll_may_outlast_the_client_timeout_by_its_wait(server):
    def slow(_seen):
        time.sleep(1.5)
        return 200, {}, json.dumps({"run": {}, "cursor": {}, "done": True}).encode()

    server.routes[("GET", f"/runs/{RUN}/updates")] = slow
    cursor = {"stdout": 0, "stderr": 0, "events": 0}
    assert server.client(timeout=1).run_updates(RUN, cursor, wait=2)["done"]
    assert server.seen[0].query["wait"] == ["2"]


def test_stream_run_reads_server_sent_events(server):
    events = [b"retry: 2000\n\n", b": keepalive\n\n",
              b'id: 1.0.0.\nevent: log\ndata: {"stream": "stdout", "lines": []}\n\n',
              b'event: end\ndata: {"reason": "finished"}\n\n']  # fmt: skip
    server.routes[("GET", f"/runs/{RUN}/stream")] = answer(200, events)
    got = list(server.client().stream_run(RUN, tail=5))
    assert got == [("log", {"stream": "stdout", "lines": []}), ("end", {"reason": "finished"})]
    assert server.seen[0].query == {"tail": ["5"], "metrics": ["1"]}


def test_logs_append_and_read_back(server):
    server.routes[("POST", f"/runs/{RUN}/logs/stdout")] = answer(200, {"next_offset": 12})
    pages = iter([{"items": [{"offset": 0, "text": "a"}], "next_offset": 1},
                  {"items": [], "next_offset": 1}])  # fmt: skip
    server.routes[("GET", f"/runs/{RUN}/logs/stdout")] = lambda _s: (
        200, {}, json.dumps(next(pages)).encode())  # fmt: skip
    client = server.client()
    assert client.append_logs(RUN, "stdout", 10, ["x", "y"], partial="50%") == 12
    assert json.loads(server.seen[0].body) == {"offset": 10, "lines": ["x", "y"], "partial": "50%"}
    assert [line["text"] for line in client.iter_logs(RUN)] == ["a"]
