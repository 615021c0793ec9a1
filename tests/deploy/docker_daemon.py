"""A Docker daemon of the deploy tests' own: its socket, data root, exec root and pidfile live
under one folder, so the tests never touch a Docker the machine already runs, and start from an
empty data root (what CI has). A daemon left behind by a killed test is found by its pidfile and
stopped at the next start; nothing else stays once `stop` ran."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

# Debian's docker CLI (20.10, legacy builder); /usr/local/bin/docker may be a newer CLI without buildx.
DOCKER_CLI = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


class PrivateDocker:
    """dockerd on unix://<root>/docker.sock with its state under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}
        self.docker_cli = DOCKER_CLI
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self._stop_pid(self._leftover_pid())
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            "dockerd",
            f"--host=unix://{self.socket}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.pidfile}",
            "--storage-driver=overlay2",
        ]
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self._proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.docker("version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` against this daemon; stdout and stderr captured as text."""
        p = subprocess.run([DOCKER_CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} ... exited {p.returncode}:\n{p.stderr[-3000:]}")
        return p

    def import_rootfs(self, rootfs: Path, tag: str) -> None:
        """A root file system (debootstrap's) as image `tag`: `tar -c | docker import`."""
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [DOCKER_CLI, "import", "-", tag], env=self.env, stdin=tar.stdout, capture_output=True, timeout=600
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"importing {rootfs} as {tag} failed: {imported.stderr.decode()[-2000:]}")

    def stop(self, keep_data: bool = False) -> None:
        """Stop the daemon (its containers with it) and, unless `keep_data`, delete its data root."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if not keep_data:
            shutil.rmtree(self.root / "data", ignore_errors=True)
            shutil.rmtree(self.root / "exec", ignore_errors=True)

    def _leftover_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"dockerd" in cmdline and str(self.root).encode() in cmdline else None

    @staticmethod
    def _stop_pid(pid: int | None, timeout: float = 60) -> None:
        """Stop a daemon that is not our child (a killed test's)."""
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
