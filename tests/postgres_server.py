"""A real Postgres server for tests (Debian's `postgresql` packages), on a free 127.0.0.1 port.

initdb into a fresh folder (trust authentication, superuser `postgres`), pg_ctl start listening on
127.0.0.1 only (no Unix socket), databases made with psql, pg_ctl stop at the end. Postgres refuses
to run as root: as root the cluster folder is owned by, and the server runs as, the `postgres` user
(Debian's package makes it), in a folder outside pytest's tmp_path (that one is private to root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

OS_USER = "postgres"
SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str | None:
    """Debian keeps the server's programs in /usr/lib/postgresql/<major>/bin (not on PATH)."""
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()],
    )
    return versions[-1] if versions else shutil.which(name)


def missing() -> str | None:
    """Why no server can run here (the reason for pytest.skip), or None."""
    absent = [n for n in ("initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore") if _binary(n) is None]
    if absent:
        return f"Postgres is not installed ({', '.join(absent)} missing: apt-get install postgresql postgresql-client)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no `{OS_USER}` user to run Postgres as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing (util-linux)"
    return None


class PostgresServer:
    """initdb + pg_ctl on a free port; `url(db)` for each database made by `create_db`."""

    def __init__(self, port: int | None = None) -> None:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="medialens-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", OS_USER, "--", *args] if self.as_root else list(args)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
        return done

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def start(self) -> PostgresServer:
        if self.as_root:
            os.chmod(self.folder, 0o755)
            pw = pwd.getpwnam(OS_USER)
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        if not self.data.exists():
            self._run(
                str(_binary("initdb")),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                timeout=120,
            )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        self._run(str(_binary("pg_ctl")), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                  "start", timeout=90)  # fmt: skip
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postgres did not answer on port {self.port}: {self.log_tail()}")
            time.sleep(0.1)
        return self

    def psql(self, sql: str, db: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(_binary("psql")), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(db), "-c", sql]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr.strip()}")
        return done

    def create_db(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def tables(self, db: str) -> list[str]:
        out = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", db=db).stdout
        return out.split()

    def running(self) -> bool:
        return self._run(str(_binary("pg_ctl")), "-D", str(self.data), "status", check=False).returncode == 0

    def stop(self) -> None:
        if self.data.exists() and self.running():
            self._run(str(_binary("pg_ctl")), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=90)

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return "(no server log)"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_or_skip() -> PostgresServer:
    """A started server, or the test skipped with the reason when Postgres cannot run here."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    return PostgresServer().start()
