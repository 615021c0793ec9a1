"""deploy/nginx/start.sh in front of a real dagster-webserver and results UI (Debian's nginx, on
loopback): TLS with the certificate it made, 401 without credentials, basic auth and a bearer
token, GraphQL and the websocket upgrade of live logs through it, 429 from a burst, and no start
without credentials."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.media_assets.ui.browser import free_port, stop, ui_server

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "deploy" / "nginx" / "start.sh"
BIN = Path(sys.executable).parent
TOKEN = "a1b2c3d4" * 8  # 64 characters, as `openssl rand -hex 32` makes (README)
USER, PASSWORD = "ana", "s3cret pass:word"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="Debian's nginx is not installed (.ci/apt-deps.sh)"),
]


@dataclass
class Proxy:
    """The running proxy: its ports, a TLS context that trusts its certificate, how it was started."""

    port: int
    results_port: int
    http_port: int
    ssl: ssl.SSLContext
    env: dict[str, str]
    log: Path
    state: Path


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"port {port} not open after {timeout} s:\n{log.read_text()[-3000:]}")


def started(cmd: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port(port, proc, log)
    return proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """dagster-webserver and `medialens ui` on loopback, nginx in front of both via start.sh."""
    tmp = tmp_path_factory.mktemp("proxy")
    # As root, start.sh runs nginx's workers as www-data, which must reach the password file:
    # pytest's own folders are private, so the proxy's state lives in a folder of its own.
    state = Path(tempfile.mkdtemp(prefix="medialens-proxy-"))
    state.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(DAGSTER_HOME=str(tmp / "dagster_home"), MEDIALENS_HOME=str(tmp / "home"))
    (tmp / "dagster_home").mkdir()
    dagster_port, port, results_port, http_port = (free_port() for _ in range(4))
    with contextlib.ExitStack() as stack:
        web = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(dagster_port), "-w", "workspace.yaml"]
        stack.callback(stop, started(web, {**env, "PWD": str(ROOT)}, tmp / "webserver.log", dagster_port))
        ui = stack.enter_context(ui_server(env, tmp / "ui.log"))
        proxy_env = {
            **env,
            "MEDIALENS_PROXY_STATE": str(state),
            "MEDIALENS_PROXY_PORT": str(port),
            "MEDIALENS_PROXY_HTTP_PORT": str(http_port),
            "MEDIALENS_DAGSTER_UPSTREAM": f"127.0.0.1:{dagster_port}",
            "MEDIALENS_RESULTS_UPSTREAM": ui.removeprefix("http://"),
            "MEDIALENS_PROXY_RESULTS_PORT": str(results_port),
            "MEDIALENS_PROXY_USER": USER,
            "MEDIALENS_PROXY_PASSWORD": PASSWORD,
            "MEDIALENS_PROXY_TOKEN": TOKEN,
            "MEDIALENS_PROXY_RATE": "5r/s",
            "MEDIALENS_PROXY_BURST": "15",
        }
        proxy = started(["sh", str(START)], proxy_env, tmp / "proxy.log", port)
        stack.callback(stop, proxy)
        stack.callback(shutil.rmtree, state, ignore_errors=True)
        wait_for_port(results_port, proxy, tmp / "proxy.log")
        context = ssl.create_default_context(cafile=str(state / "tls" / "cert.pem"))
        yield Proxy(port, results_port, http_port, context, proxy_env, tmp / "proxy.log", state)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(
    stack: Proxy, path: str, headers: dict[str, str] | None = None, data: bytes | None = None, port: int | None = None
) -> tuple[int, bytes]:
    """(status, body) of an HTTPS request through the proxy, checked against its certificate."""
    url = f"https://127.0.0.1:{port or stack.port}{path}"
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, context=stack.ssl, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


GRAPHQL = json.dumps({"query": "{ version }"}).encode()


def test_the_dagster_ui_needs_credentials_and_takes_a_password_or_the_token(stack: Proxy) -> None:
    assert request(stack, "/graphql", data=GRAPHQL)[0] == 401
    assert request(stack, "/graphql", basic(password="wrong"), GRAPHQL)[0] == 401
    assert request(stack, "/graphql", {"Authorization": "Bearer not-the-token-at-all"}, GRAPHQL)[0] == 401
    status, body = request(stack, "/graphql", basic(), GRAPHQL)
    assert status == 200 and json.loads(body)["data"]["version"], body
    status, body = request(stack, "/graphql", {"Authorization": f"Bearer {TOKEN}"}, GRAPHQL)
    assert status == 200 and json.loads(body)["data"]["version"], body
    # the health check of a container needs no credentials, and says nothing else
    assert request(stack, "/proxy-health") == (200, b"ok\n")


def websocket_upgrade(stack: Proxy, path: str, port: int, headers: dict[str, str]) -> str:
    """The status line nginx answers a websocket handshake with (101: the upgrade went through)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        stack.ssl.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return tls.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_live_logs_upgrade_to_a_websocket_through_the_proxy(stack: Proxy) -> None:
    # Dagster's UI subscribes to run logs over a graphql-ws websocket on /graphql
    protocol = {"Sec-WebSocket-Protocol": "graphql-ws"}
    assert " 401 " in websocket_upgrade(stack, "/graphql", stack.port, protocol)
    assert " 101 " in websocket_upgrade(stack, "/graphql", stack.port, {**protocol, **basic()})


def test_the_results_ui_is_behind_the_same_proxy(stack: Proxy) -> None:
    assert request(stack, "/_stcore/health", port=stack.results_port)[0] == 401
    assert request(stack, "/_stcore/health", basic(), port=stack.results_port) == (200, b"ok")
    # Streamlit's session is a websocket too
    assert " 101 " in websocket_upgrade(stack, "/_stcore/stream", stack.results_port, basic())


def test_plain_http_is_redirected_to_https(stack: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=30) as s:
        s.sendall(b"GET /runs?x=1 HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
        head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 301") and f"Location: https://example.org:{stack.port}/runs?x=1" in head


def test_a_burst_from_one_client_gets_429(stack: Proxy) -> None:
    time.sleep(4)  # the bucket of the other tests drains (5 r/s)
    # without credentials: the limit comes before the password check, so guessing is slowed too
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: request(stack, "/graphql", data=GRAPHQL)[0], range(60)))
    assert statuses.count(401) >= 10 and statuses.count(429) >= 20, statuses  # burst 15 above 5 r/s
    assert set(statuses) == {401, 429}
    time.sleep(4)
    assert request(stack, "/graphql", basic(), GRAPHQL)[0] == 200  # and it recovers


def test_no_credentials_no_start_and_the_certificate_is_made_once(stack: Proxy) -> None:
    secrets = ("MEDIALENS_PROXY_USER", "MEDIALENS_PROXY_PASSWORD", "MEDIALENS_PROXY_TOKEN")
    env = {k: v for k, v in stack.env.items() if k not in secrets}
    p = subprocess.run(["sh", str(START)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no credentials" in p.stderr and "MEDIALENS_PROXY_PASSWORD" in p.stderr
    short = {**stack.env, "MEDIALENS_PROXY_TOKEN": "short"}
    bad = subprocess.run(["sh", str(START)], env=short, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "MEDIALENS_PROXY_TOKEN" in bad.stderr
    # made once on the first start: the fingerprint it printed is that of the certificate in use
    fingerprint = subprocess.run(
        ["openssl", "x509", "-in", str(stack.state / "tls" / "cert.pem"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = stack.log.read_text()
    assert log.count("making a self-signed certificate") == 1 and fingerprint in log
    # a restart (another container, same state volume) keeps it: browsers that trusted it still do
    ports = {"MEDIALENS_PROXY_PORT": str(free_port()), "MEDIALENS_PROXY_RESULTS_PORT": str(free_port())}
    again = started(
        ["sh", str(START)],
        {**stack.env, **ports, "MEDIALENS_PROXY_HTTP_PORT": ""},
        stack.log.with_name("again.log"),
        int(ports["MEDIALENS_PROXY_PORT"]),
    )
    stop(again)
    second = stack.log.with_name("again.log").read_text()
    assert "making a self-signed certificate" not in second and fingerprint in second
