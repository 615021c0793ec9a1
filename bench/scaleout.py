"""The compose stack (deploy/compose.yaml) with 1 vs 2 run containers at once, side by side.

The same N files (distinct bytes, bench/vision.py) are dropped into the inbox volume of a fresh
stack; the upload sensor makes runs of `--per-run` files, each run a container of its own
(DockerRunLauncher), at most C at once (`concurrency.runs` of an edited deploy/stack/dagster.yaml
mounted into the stack). The window from the drop until every file is analysed is timed for C = 1
and C = 2, then their throughput ratio is printed. Model steps still take turns per pool
(`--pool-limit`, default 1 as shipped): on one CPU host what overlaps is the rest of a run
(container start, decoding, Dagster's own steps); more hosts or GPUs are where C pays.

Needs root, a Docker daemon (DOCKER_HOST, or the default socket) holding the medialens image
(deploy/build-image.sh), and docker-compose. The services image is built from --base.

Usage: sudo .venv/bin/python bench/scaleout.py [--files 20] [--per-run 2] [--image medialens:latest]
       [--base debian:bookworm-slim] [--pool-limit 1]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.redis_server import free_port  # noqa: E402  (the tests' own free loopback port)

COMPOSE = ROOT / "deploy" / "compose.yaml"
PROJECT = "medialens-bench"


def docker_socket() -> Path:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        sys.exit(f"bench/scaleout.py: DOCKER_HOST={host}: a local unix socket is needed (the stack mounts it)")
    return Path(host.removeprefix("unix://"))


class Stack:
    """One fresh stack in `folder`: its .env, an instance config with `runs` containers at once."""

    def __init__(self, folder: Path, image: str, base: str, runs: int, per_run: int, pool_limit: int) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.image = image
        sock = docker_socket()
        self.port = free_port()
        instance = yaml.safe_load((ROOT / "deploy" / "stack" / "dagster.yaml").read_text())
        instance["concurrency"]["runs"]["max_concurrent_runs"] = runs
        instance["concurrency"]["pools"]["default_limit"] = pool_limit
        (folder / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
        mount = {"volumes": ["data:/data", f"{folder / 'dagster.yaml'}:/opt/dagster/stack/dagster.yaml:ro"]}
        socket_mount = {"volumes": [*mount["volumes"], f"{sock}:/var/run/docker.sock"]}
        override = {"services": {"codeserver": mount, "daemon": socket_mount, "webserver": socket_mount}}
        (folder / "override.yaml").write_text(yaml.safe_dump(override))
        env = {
            "POSTGRES_PASSWORD": secrets.token_hex(12),
            "REDIS_PASSWORD": secrets.token_hex(12),
            "MEDIALENS_PROXY_USER": "bench",
            "MEDIALENS_PROXY_PASSWORD": secrets.token_hex(12),
            "MEDIALENS_PROXY_BIND": "127.0.0.1",
            "MEDIALENS_PROXY_PORT": str(self.port),
            "MEDIALENS_PROXY_RESULTS_PORT": str(free_port()),
            "MEDIALENS_MAX_PARTITIONS_PER_RUN": str(per_run),
            "DOCKER_SOCKET": str(sock),
            "DOCKER_GID": str(sock.stat().st_gid),
            "MEDIALENS_IMAGE": image,
            "BASE_IMAGE": base,
        }
        (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["docker-compose", "-f", str(COMPOSE), "-f", str(self.folder / "override.yaml"),
               "--env-file", str(self.folder / ".env"), "-p", PROJECT, *args]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if check and p.returncode != 0:
            sys.exit(f"docker-compose {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return p

    def library(self) -> list[dict]:
        p = self.compose("exec", "-T", "webserver", "medialens", "library", "--json", check=False)
        return json.loads(p.stdout)["media"] if p.returncode == 0 else []

    def up(self) -> None:
        p = self.compose("up", "-d", "--build", check=False)
        if p.returncode != 0:
            ps = self.compose("ps", check=False).stdout
            logs = self.compose("logs", "--no-color", "--tail=40", check=False).stdout
            sys.exit(f"docker-compose up exited {p.returncode}:\n{p.stderr[-2000:]}\n{ps}\n{logs}")
        deadline = time.monotonic() + 300
        while self.compose("exec", "-T", "webserver", "medialens", "library", "--json", check=False).returncode:
            if time.monotonic() > deadline:
                sys.exit("the stack did not come up in 300 s:\n" + self.compose("logs", "--tail=30").stdout)
            time.sleep(2)

    def down(self) -> None:
        # run containers first: a volume still used by a container is not removed
        runs = subprocess.run(["docker", "ps", "-aq", "--filter", "label=dagster/run_id"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
        if runs:
            subprocess.run(["docker", "rm", "-f", *runs], capture_output=True)
        self.compose("down", "-v", "--timeout", "20", check=False)


def run_containers() -> list[tuple[float, float]]:
    """(started, finished) of every run container, in seconds since the epoch."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=dagster/run_id"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    spans = []
    for state in json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout or "[]"):
        times = [datetime.fromisoformat(state["State"][k][:26].rstrip("Z") + "+00:00").timestamp()
                 for k in ("StartedAt", "FinishedAt")]  # fmt: skip
        spans.append((times[0], times[1]))
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def measure(files: list[Path], runs: int, args: argparse.Namespace, tmp: Path) -> dict:
    stack = Stack(tmp / f"stack-{runs}", args.image, args.base, runs, args.per_run, args.pool_limit)
    try:
        stack.up()
        media = tmp / "media"
        started = time.time()
        subprocess.run(["docker", "run", "--rm", "-v", "medialens-data:/data", "-v", f"{media}:/media:ro", args.image,
                        "sh", "-c", "mkdir -p /data/inbox && cp /media/* /data/inbox/"], check=True)  # fmt: skip
        while True:
            library = stack.library()
            done = [m for m in library if m["status"] in ("analysed", "failed")]
            if len(done) >= len(files):
                break
            if time.time() - started > 3600:
                sys.exit(f"not done in an hour: {len(done)} of {len(files)}")
            time.sleep(2)
        wall = time.time() - started
        spans = run_containers()
        return {
            "concurrent_runs": runs,
            "files": len(files),
            "analysed": sum(m["status"] == "analysed" for m in library),
            "wall_s": round(wall, 1),
            "files_per_min": round(len(files) / wall * 60, 2),
            "run_containers": len(spans),
            "most_containers_at_once": most_at_once(spans),
            "mean_container_s": round(sum(f - s for s, f in spans) / max(1, len(spans)), 1),
        }
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--per-run", type=int, default=2, help="files per run (MEDIALENS_MAX_PARTITIONS_PER_RUN)")
    parser.add_argument("--image", default="medialens:latest")
    parser.add_argument("--base", default="debian:bookworm-slim", help="base of the services image")
    parser.add_argument("--pool-limit", type=int, default=1, help="model steps at once per pool")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from vision import distinct_copies

    from media_assets.service.samples import generate_samples

    with tempfile.TemporaryDirectory(prefix="medialens-scaleout-") as t:
        tmp = Path(t)
        files = distinct_copies(generate_samples(tmp / "samples"), args.files, tmp / "media")
        (tmp / "media").chmod(0o755)
        results = []
        for runs in (1, 2):
            results.append(measure(files, runs, args, tmp))
            print(json.dumps(results[-1]), flush=True)
        one, two = results
        print(json.dumps({"throughput_2_vs_1": round(two["files_per_min"] / one["files_per_min"], 2),
                          "per_run": args.per_run, "pool_limit": args.pool_limit, "cpus": os.cpu_count()}))  # fmt: skip


if __name__ == "__main__":
    main()
