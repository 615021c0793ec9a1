"""deploy/compose.yaml brought up on the deploy tests' private dockerd (`make deploy-test`): media
dropped into the inbox volume are analysed by sensor-launched runs, each in a container of its own,
exactly as a local `medialens analyse`; nginx lets only credentials through and limits bursts; a
`reanalyse --wait` backfill finishes across a daemon restart. Each stage's time is printed."""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import BASE, DEPLOY_TEST, IMAGE, ROOT, assert_same_analysis, timed
from tests.deploy.docker_daemon import PrivateDocker
from tests.media_assets.ui.browser import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEPLOY_TEST, reason="brings the compose stack up on a private dockerd: `make deploy-test`"),
]

COMPOSE = ROOT / "deploy" / "compose.yaml"
PROJECT = "medialens-test"
UNVERIFIED = ssl._create_unverified_context()  # the stack's self-signed certificate


@dataclass
class Stack:
    docker: PrivateDocker
    env_file: Path
    port: int
    user: str
    password: str
    token: str

    def compose_cmd(self, *args: str) -> list[str]:
        return ["docker-compose", "-f", str(COMPOSE), "--env-file", str(self.env_file), "-p", PROJECT, *args]

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        cmd = self.compose_cmd(*args)
        p = subprocess.run(cmd, env=self.docker.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return p

    def medialens(self, *args: str, service: str = "webserver", timeout: float = 600) -> Any:
        """`medialens ARGS --json` inside the stack, parsed."""
        p = self.compose("exec", "-T", service, "medialens", *args, "--json", timeout=timeout)
        return json.loads(p.stdout)

    def request(self, path: str, body: bytes | None = None, auth: str | None = None) -> tuple[int, bytes]:
        """HTTPS through nginx from the host; (status, body)."""
        headers = {"Content-Type": "application/json"} if body else {}
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, context=UNVERIFIED, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def graphql(self, query: str) -> dict[str, Any]:
        for _ in range(30):  # a 429 (the burst test drained the bucket) says: come back in a moment
            status, body = self.request("/graphql", json.dumps({"query": query}).encode(), f"Bearer {self.token}")
            if status != 429:
                break
            time.sleep(1)
        assert status == 200, (status, body[:500])
        return json.loads(body)["data"]


@pytest.fixture(scope="module")
def stack(docker: PrivateDocker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("stack")
    port, results_port = free_port(), free_port()
    s = Stack(docker, folder / ".env", port, "ana", secrets.token_hex(12), secrets.token_hex(20))
    s.env_file.write_text(
        "\n".join(
            [
                f"POSTGRES_PASSWORD={secrets.token_hex(12)}",
                f"REDIS_PASSWORD={secrets.token_hex(12)}",
                f"MEDIALENS_PROXY_USER={s.user}",
                f"MEDIALENS_PROXY_PASSWORD={s.password}",
                f"MEDIALENS_PROXY_TOKEN={s.token}",
                "MEDIALENS_PROXY_BIND=127.0.0.1",
                f"MEDIALENS_PROXY_PORT={port}",
                f"MEDIALENS_PROXY_RESULTS_PORT={results_port}",
                # a small bucket, so a bounded burst from the test hits the limit
                "MEDIALENS_PROXY_RATE=5r/s",
                "MEDIALENS_PROXY_BURST=40",
                f"DOCKER_SOCKET={docker.socket}",
                f"DOCKER_GID={docker.socket.stat().st_gid}",
                f"MEDIALENS_IMAGE={IMAGE}",
                f"BASE_IMAGE={BASE}",
            ]
        )
        + "\n"
    )
    started = time.monotonic()
    s.compose("build", timeout=900)
    timed("services image (Postgres, Redis, nginx from Debian)", started)
    started = time.monotonic()
    try:
        s.compose("up", "-d", timeout=600)
        deadline = time.monotonic() + 300
        while _health(s) != 200:
            assert time.monotonic() < deadline, s.compose("ps").stdout + s.compose("logs", "--tail=40").stdout
            time.sleep(2)
        timed("stack up (postgres, redis, codeserver, webserver, daemon, results, proxy)", started)
        yield s
    finally:
        logs = s.compose("logs", "--no-color", check=False).stdout
        (Path(os.environ.get("MEDIALENS_DEPLOY_LOGS", folder)) / "stack.log").write_text(logs)
        started = time.monotonic()
        # run containers first: a volume still used by a container is not removed
        runs = docker.docker("ps", "-aq", "--filter", "label=dagster/run_id", check=False).stdout.split()
        if runs:
            docker.docker("rm", "-f", *runs, check=False)
        s.compose("down", "-v", "--timeout", "20", check=False)
        timed("stack down", started)


def _health(s: Stack) -> int:
    """nginx's own health answer: 200, or 0 while nothing listens yet."""
    try:
        return s.request("/proxy-health")[0]
    except OSError:
        return 0


RUNS = """{ runsOrError { ... on Runs { results { runId status jobName
  tags { key value } } } } }"""


def _runs(s: Stack) -> list[dict[str, Any]]:
    return s.graphql(RUNS)["runsOrError"]["results"]


def test_dropped_media_are_analysed_in_run_containers_as_locally(
    stack: Stack, media: Path, local_shows: dict[str, dict[str, Any]]
) -> None:
    started = time.monotonic()
    stack.docker.docker("run", "--rm", "-v", "medialens-data:/data", "-v", f"{media}:/media:ro", IMAGE,
                        "sh", "-c", "mkdir -p /data/inbox && cp /media/* /data/inbox/")  # fmt: skip
    keys = {name: show["key"] for name, show in local_shows.items()}
    deadline = time.monotonic() + 900
    while True:
        library = {m["key"]: m for m in stack.medialens("library")["media"]}
        if all(library.get(k, {}).get("status") == "analysed" for k in keys.values()):
            break
        failed = [m for m in library.values() if m["status"] == "failed"]
        assert not failed, failed
        assert time.monotonic() < deadline, (library, _runs(stack))
        time.sleep(5)
    timed("3 media dropped into the inbox volume, analysed by sensor-launched runs", started)

    runs = _runs(stack)
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    for r in runs:  # each run in a container of its own, which exited 0
        tags = {t["key"]: t["value"] for t in r["tags"]}
        container = tags["docker/container_id"]
        state = json.loads(stack.docker.docker("inspect", "--format", "{{json .State}}", container).stdout)
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), (r["runId"], state)
        health = stack.docker.docker("inspect", "--format", "{{json .Config.Healthcheck}}", container).stdout
        assert json.loads(health)["Test"] == ["NONE"]  # the image's costly health check is off in runs
        requests = stack.docker.docker("inspect", "--format", "{{json .HostConfig.DeviceRequests}}", container)
        assert json.loads(requests.stdout) in (None, [])  # a CPU host: no GPU asked for, nothing to fail
        assert tags["dagster/image"] == IMAGE
    assert len({t["value"] for r in runs for t in r["tags"] if t["key"] == "docker/container_id"}) == len(runs)
    # model runs in the default `gpu` pool on this CPU host: no device request, and the run says why
    logs = stack.docker.docker("logs", container)
    assert "MEDIALENS_DEVICE=auto: no CUDA GPU" in logs.stdout + logs.stderr

    shows = {name: stack.medialens("show", key) for name, key in keys.items()}
    assert_same_analysis(shows, local_shows)


def test_nginx_lets_only_credentials_through_and_limits_bursts(stack: Stack) -> None:
    query = json.dumps({"query": "{ version }"}).encode()
    assert stack.request("/graphql", query)[0] == 401
    assert stack.request("/graphql", query, "Bearer not-the-token-at-all")[0] == 401
    basic = "Basic " + base64.b64encode(f"{stack.user}:{stack.password}".encode()).decode()
    status, body = stack.request("/graphql", query, basic)
    assert status == 200 and json.loads(body)["data"]["version"], body[:300]
    assert stack.request("/graphql", query, f"Bearer {stack.token}")[0] == 200

    statuses: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        for _ in range(10):
            code = stack.request("/server_info", None, f"Bearer {stack.token}")[0]
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 429 in statuses and 200 in statuses, sorted(set(statuses))
    assert set(statuses) <= {200, 429}, sorted(set(statuses))


def test_a_reanalyse_backfill_finishes_across_a_daemon_restart(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("exec", "-T", "webserver", "sh", "-c",
                  "echo 'ocr_text: {det_limit_side_len: 640}' >> /data/medialens.yaml")  # fmt: skip
    stack.compose("restart", "codeserver")  # the code location reads its settings when it loads
    stale = stack.medialens("stale")["stale"]
    partitions = sorted(s["partition"] for s in stale if s["asset"] == "ocr_text")
    assert partitions, stale
    reanalyse = ("medialens", "reanalyse", "--asset", "ocr_text", "--wait", "--json")
    cmd = stack.compose_cmd("exec", "-T", "webserver", *reanalyse)
    waiting = subprocess.Popen(cmd, env=stack.docker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(t["key"] == "dagster/backfill" for r in _runs(stack) for t in r["tags"]):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, _runs(stack)
            time.sleep(1)
        restarted = time.monotonic()
        stack.compose("restart", "--timeout", "10", "daemon")
        timed("daemon restarted mid-backfill", restarted)
        out, err = waiting.communicate(timeout=900)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, out + err[-3000:]
    result = json.loads(out)
    assert result["status"] == "COMPLETED_SUCCESS", result
    assert sorted(result["partitions"]) == partitions, result
    assert stack.medialens("stale")["stale"] == []
    backfill_runs = [r for r in _runs(stack) if any(t["key"] == "dagster/backfill" for t in r["tags"])]
    assert backfill_runs and all(r["status"] == "SUCCESS" for r in backfill_runs), backfill_runs
    assert all(any(t["key"] == "docker/container_id" for t in r["tags"]) for r in backfill_runs)
    timed("reanalyse --wait backfill through the stack, daemon restarted", started)


def test_a_killed_run_container_is_failed_and_its_run_retried(stack: Stack, media: Path, tmp_path: Path) -> None:
    """Crash safety in the stack: a run container SIGKILLed mid-run (an OOM kill, `docker kill`) is
    seen by run monitoring, its run failed and retried once in a new container, nothing lost."""
    started = time.monotonic()
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o755)
    # new bytes, the same media: a partition of its own that no run has analysed yet
    (drop / "killed.mp4").write_bytes((media / "talk.mp4").read_bytes() + b"\0" * 7)
    before = {r["runId"] for r in _runs(stack)}
    stack.docker.docker("run", "--rm", "-v", "medialens-data:/data", "-v", f"{drop}:/drop:ro", IMAGE,
                        "cp", "/drop/killed.mp4", "/data/inbox/")  # fmt: skip
    deadline = time.monotonic() + 300
    while True:  # its run's container, once a step has started in it
        new = [r for r in _runs(stack) if r["runId"] not in before]
        tags = {t["key"]: t["value"] for r in new for t in r["tags"]}
        if new and new[0]["status"] == "STARTED" and "docker/container_id" in tags:
            logs = stack.docker.docker("logs", tags["docker/container_id"], check=False)
            if "STEP_START" in logs.stdout + logs.stderr:
                break
        assert time.monotonic() < deadline, new
        time.sleep(0.5)
    killed = new[0]["runId"]
    stack.docker.docker("kill", tags["docker/container_id"])
    deadline = time.monotonic() + 600
    while True:
        library = {m["source_name"]: m for m in stack.medialens("library")["media"]}
        if library.get("killed.mp4", {}).get("status") == "analysed":
            break
        assert time.monotonic() < deadline, (library.get("killed.mp4"), _runs(stack))
        time.sleep(5)
    runs = {r["runId"]: r for r in _runs(stack) if r["runId"] not in before}
    assert runs[killed]["status"] == "FAILURE", runs[killed]
    retries = [r for r in runs.values() if {"key": "dagster/parent_run_id", "value": killed} in r["tags"]]
    assert [r["status"] for r in retries] == ["SUCCESS"], runs
    assert stack.medialens("stale")["stale"] == []
    timed("a run container killed mid-run: failed by run monitoring, retried, analysed", started)
