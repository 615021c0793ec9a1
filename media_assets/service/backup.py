"""`medialens backup DIR` / `medialens restore DIR`: consistent, incremental snapshots of a library.

What a snapshot holds: the Dagster instance the CLI uses (every sqlite file of its DAGSTER_HOME,
copied with sqlite's online backup API; `pg_dump` of a Postgres instance), Qdrant (the embedded
folder, copied while holding its folder lock; a server's per-collection snapshots), the store
(originals, keyframes, audio, tables, manifests, sources, the people decision log and clustering
state, review reports, forget journals; never `store/.scratch/`) and the settings file. The inbox is
not part of it (files there are not in the library yet).

Layout of DIR (every file appears by a rename, complete, so a backup killed at any point leaves
DIR usable and the next backup simply goes on; a lock file keeps two backups apart):
  objects/<sha[:2]>/<sha256>      content-addressed blobs: a file's bytes, stored once
  snapshots/<UTC timestamp>.json  one manifest per snapshot: for each file its path (store/...,
                                  qdrant/..., dagster/..., config/...), size and sha256, plus where
                                  the library lived (home, DAGSTER_HOME) and how it was made
  latest.json                     {"snapshot": "<timestamp>.json"}: the last complete snapshot
  tmp/                            blobs being written (swept by the next backup)

Incremental: a file whose size, modification time and inode equal the previous snapshot's entry
reuses that entry's sha256 without being read; a blob already in objects/ is never written again,
so an original (already content-addressed in the store: its name is its hash) is copied once.

Ordering (why the snapshot is consistent while runs go on): the Dagster instance is copied FIRST,
then Qdrant, then the store, manifests before the tables and artefacts they name. Every asset writes
its files (atomically, by rename) before Dagster records its materialisation, and a manifest after
its tables, so whatever the instance copy claims was already on disk and is caught by the later
copies; what was written after the instance copy comes along as a table without a materialisation,
which a re-run replaces. Two things could still break that, and the backup rules them out:
- a re-analysis with a new version prunes the older tables between the copies: each copied manifest
  must name files that are in the snapshot and a version the instance copy recorded as materialised
  for that partition, else the manifest is left out (so `show` never reads beyond what `stale`
  says is there, and a media the instance has not finished shows as not analysed yet);
- a `forget` deletes a partition and its files between the copies: a partition of the instance copy
  that is gone by the end of the store copy makes the backup start over (incremental: cheap).
On restore the store and Qdrant are put in place before the instance, so an interrupted restore
never leaves an instance that claims files that are not there (and leaves a marker saying so).

Restore goes into an empty home (exit 2 otherwise): every blob is checked against its size and
sha256 while it is copied into a staging folder beside its destination; only when everything is
verified are the folders renamed into place. Absolute paths of the old home (manifests, tables,
event logs) are rewritten to the new one; dagster.yaml is written for the new DAGSTER_HOME. Runs
that were in progress at backup time end FAILURE in the restored instance (what they had finished
is restored and `stale` lists the rest).

A Postgres instance (deploy/dagster.yaml; tests/media_assets/test_postgres_ops.py against a real
server) is copied with `pg_dump --format=custom` under an exported snapshot, and the manifest check
above reads partitions and recorded versions with SQL in that same snapshot, so it sees exactly what
the dump holds. The password goes to pg_dump/pg_restore in PGPASSWORD, never on a command line.
It is restored with pg_restore into the database DAGSTER_HOME's own dagster.yaml names when that
file configures Postgres (the file is kept), else into the one the backed-up dagster.yaml names
(env values such as DAGSTER_PG_DB from this environment); that database must hold no tables (exit 2
otherwise), and the old home's paths are rewritten in its text columns. A sqlite snapshot is not
restored into a home configured for Postgres (no migration between the two). Qdrant servers
(QDRANT_URL) are handled through their snapshot API, untested here (no server).
The sqlite files are looked for under DAGSTER_HOME (every medialens dagster.yaml has base_dir =
DAGSTER_HOME); the embedded Qdrant points carry no paths, so they are restored as they are.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import yaml

from media_assets.plumbing.config import Paths

FORMAT = 1
CHUNK = 1 << 20
PROGRESS_EVERY_S = 3.0
SNAPSHOTS = "snapshots"
OBJECTS = "objects"
LATEST = "latest.json"
RESTORE_MARKER = ".medialens-restore-incomplete"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# the run storage (runs, dynamic partitions) first, then the asset index, then each run's event log
DB_ORDER = ("history/runs.db", "history/runs/index.db")
QDRANT_SKIP = {".medialens.lock", ".lock"}
STORE_FIRST = ("manifests", "sources")


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


class RestoreRefused(BackupError):
    """The target home already holds a library (exit 2)."""


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- progress ---------------------------------------------------------------------------------------
@dataclass
class Progress:
    """Files and bytes done, on stderr every few seconds and at the end of each phase."""

    verb: str
    say: Callable[[str], None] = _err
    files: int = 0
    bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    phase: str = ""
    _last: float = field(default_factory=time.monotonic)

    def start(self, phase: str, total_files: int | None = None, total_bytes: int | None = None) -> None:
        self.phase = phase
        of = f" ({total_files} files, {_human(total_bytes or 0)})" if total_files is not None else ""
        self.say(f"{self.verb}: {phase}{of} ...")
        self._last = time.monotonic()

    def add(self, size: int, copied: bool, written: int | None = None) -> None:
        """One file done: `size` bytes of it, `copied` when it was new to the backup, of which
        `written` bytes were written (holes are not; None: all of `size`)."""
        self.files += 1
        self.bytes += size
        if copied:
            self.copied_files += 1
            self.copied_bytes += size if written is None else written
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self._last = time.monotonic()
            self.say(f"{self.verb}: {self.phase}: {self.status()}")

    def status(self) -> str:
        return (
            f"{self.files} files, {_human(self.bytes)} done "
            f"({self.copied_files} files, {_human(self.copied_bytes)} new)"
        )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- the blob store ---------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


HOLE_BLOCK = 1 << 16  # zero runs shorter than this are written; 16 blocks per CHUNK to compare
_ZEROS = bytes(HOLE_BLOCK)


def _write_sparse(out: Any, chunk: bytes) -> int:
    """Write `chunk`, skipping over its all-zero blocks (holes); returns the bytes written.
    Embedded Qdrant preallocates its files (32 MiB WAL segments and storage pages, mostly holes): a
    copy that wrote the zeros would turn ~0.5 MiB of data into ~150 MiB per collection, in every
    backup after a change. The caller truncates the file to its size at the end, so a trailing
    hole is still there."""
    written = 0
    view = memoryview(chunk)
    for start in range(0, len(chunk), HOLE_BLOCK):
        block = view[start : start + HOLE_BLOCK]
        if block == _ZEROS[: len(block)]:
            out.seek(len(block), os.SEEK_CUR)
        else:
            out.write(block)
            written += len(block)
    return written


class Objects:
    """DIR/objects: blobs by sha256, each written under tmp/ and renamed into place (holes of sparse
    files stay holes, see `_write_sparse`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def path(self, sha: str) -> Path:
        return self.root / OBJECTS / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put_stream(self, read: Callable[[int], bytes]) -> tuple[str, int, bool, int]:
        """Store what `read` yields; returns (sha256, size, whether the blob was new, the bytes written
        into the backup: 0 when it was there already, less than size where the content had holes)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / uuid.uuid4().hex
        digest = hashlib.sha256()
        size = written = 0
        try:
            with open(tmp, "xb") as out:
                while chunk := read(CHUNK):
                    digest.update(chunk)
                    written += _write_sparse(out, chunk)
                    size += len(chunk)
                out.truncate(size)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            dest = self.path(sha)
            if dest.is_file():
                return sha, size, False, 0
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            return sha, size, True, written
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, path: Path) -> tuple[str, int, bool, int, os.stat_result]:
        """Store a file's bytes as they are at open time (a file replaced by a rename meanwhile
        is read whole from the inode opened)."""
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            sha, size, new, written = self.put_stream(fh.read)
        return sha, size, new, written, st

    def sweep_tmp(self) -> None:
        """Remove what killed backups left under tmp/ (the caller holds DIR's lock)."""
        shutil.rmtree(self.root / "tmp", ignore_errors=True)


@contextmanager
def _dir_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup is writing into {root}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- where things live ------------------------------------------------------------------------------
def dagster_home_of(paths: Paths) -> Path:
    """The CLI's DAGSTER_HOME (media_assets/service/headless.py dagster_instance), without creating it."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).absolute()
    local = Path("dagster_home")
    return local.absolute() if (local / "dagster.yaml").exists() else paths.home / "dagster_home"


def _resolve(value: Any) -> str:
    if isinstance(value, dict) and "env" in value:
        return os.environ.get(str(value["env"]), "")
    return "" if value is None else str(value)


@dataclass(frozen=True)
class PgConnection:
    """Where a Postgres instance lives, for libpq tools (pg_dump, pg_restore) and psycopg2: `url` is a
    plain `postgresql://` URL without the password (the SQLAlchemy driver suffix dropped, so
    `postgresql+psycopg2://` works too); the password goes in PGPASSWORD, never on a command line."""

    url: str
    password: str = ""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self) -> Any:
        try:
            import psycopg2
        except ImportError:
            raise BackupError(
                "the Dagster instance is on Postgres and psycopg2 is not installed (pip install dagster-postgres)"
            ) from None
        kwargs = {"password": self.password} if self.password else {}
        try:
            return psycopg2.connect(self.url, connect_timeout=10, **kwargs)
        except psycopg2.Error as exc:
            raise BackupError(f"Postgres at {self.where()} unreachable: {str(exc).strip()}") from None

    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def _pg_from_url(raw: str) -> PgConnection:
    parts = urlsplit(raw)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg2 -> postgresql
    if scheme not in ("postgresql", "postgres"):
        raise BackupError(f"postgres_url {scheme}://... is not a Postgres URL")
    password = unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return PgConnection(urlunsplit(("postgresql", netloc, parts.path, parts.query, "")), password)


def postgres_config(config: Path) -> PgConnection | None:
    """The Postgres instance a dagster.yaml configures (run, event log or schedule storage, the same
    keys as dagster-postgres, env values from this environment); None for any other storage."""
    if not config.exists():
        return None
    data = yaml.safe_load(config.read_text()) or {}
    for section in ("storage", "run_storage", "event_log_storage", "schedule_storage"):
        block = (data.get(section) or {}).get("postgres")
        if not isinstance(block, dict):
            continue
        if block.get("postgres_url"):
            return _pg_from_url(_resolve(block["postgres_url"]))
        db = block.get("postgres_db") or {}
        user = quote(_resolve(db.get("username")), safe="")
        host, port = _resolve(db.get("hostname")), _resolve(db.get("port") or 5432)
        name = quote(_resolve(db.get("db_name")), safe="")
        params = {str(k): _resolve(v) for k, v in (db.get("params") or {}).items()}
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        host = f"[{host}]" if ":" in host else host
        return PgConnection(f"postgresql://{user}@{host}:{port}/{name}{query}", _resolve(db.get("password")))
    return None


def _qdrant_resource() -> Any:
    from resources import build_resources

    return build_resources(Paths.from_env())["qdrant"]


# -- backup -----------------------------------------------------------------------------------------
@dataclass
class Entry:
    path: str
    size: int
    sha256: str
    ino: int | None = None
    mtime_ns: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.ino is not None:
            out["ino"], out["mtime_ns"] = self.ino, self.mtime_ns
        return out


def load_snapshot(root: Path) -> dict[str, Any] | None:
    latest = root / LATEST
    if not latest.exists():
        return None
    name = json.loads(latest.read_text())["snapshot"]
    data: dict[str, Any] = json.loads((root / SNAPSHOTS / name).read_text())
    return data


class Backup:
    def __init__(self, root: Path, paths: Paths, progress: Progress) -> None:
        self.root = root
        self.paths = paths
        self.dagster_home = dagster_home_of(paths)
        self.objects = Objects(root)
        self.progress = progress
        self.entries: dict[str, Entry] = {}
        previous = load_snapshot(root)
        self.previous: dict[str, dict[str, Any]] = {e["path"]: e for e in (previous or {}).get("files", [])}
        self.info: dict[str, Any] = {}
        self.left_out: list[str] = []
        self.pg: PgConnection | None = None
        # a Postgres instance as its dump holds it: partitions, asset -> partition -> code version
        self.pg_view: tuple[list[str], dict[str, dict[str, str | None]]] | None = None

    # one file of the live library
    def add_file(self, rel: str, path: Path, reuse: bool = True) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return  # replaced or removed since the listing: its successor is listed by what refers to it
        if not path.is_file() or path.is_symlink():
            return
        prev = self.previous.get(rel)
        if (
            reuse
            and prev
            and prev.get("ino") == st.st_ino
            and prev.get("mtime_ns") == st.st_mtime_ns
            and prev["size"] == st.st_size
            and self.objects.has(prev["sha256"])
        ):
            self.entries[rel] = Entry(rel, st.st_size, prev["sha256"], st.st_ino, st.st_mtime_ns)
            self.progress.add(st.st_size, False)
            return
        named = path.stem if rel.startswith("store/media/") else ""
        if len(named) == 64 and st.st_size and self.objects.has(named):
            # a content-addressed original whose blob is there: its name is its hash
            self.entries[rel] = Entry(rel, st.st_size, named, st.st_ino, st.st_mtime_ns)
            self.progress.add(st.st_size, False)
            return
        try:
            sha, size, new, written, fst = self.objects.put_file(path)
        except FileNotFoundError:
            return
        self.entries[rel] = Entry(rel, size, sha, fst.st_ino, fst.st_mtime_ns)
        self.progress.add(size, new, written)

    def add_stream(self, rel: str, read: Callable[[int], bytes]) -> None:
        sha, size, new, written = self.objects.put_stream(read)
        self.entries[rel] = Entry(rel, size, sha)
        self.progress.add(size, new, written)

    # the Dagster instance
    def instance(self) -> None:
        home = self.dagster_home
        self.info["dagster_home"] = str(home)
        pg = postgres_config(home / "dagster.yaml")
        if pg is not None:
            self.postgres(pg)
            return
        self.info["instance"] = "sqlite"
        if not home.is_dir():
            self.info["instance"] = "none"
            return
        files = sorted(p for p in home.rglob("*") if p.is_file() and not p.name.endswith(SQLITE_SIDE_FILES))
        dbs = [p for p in files if p.suffix == ".db"]
        order = {name: i for i, name in enumerate(DB_ORDER)}
        dbs.sort(key=lambda p: (order.get(p.relative_to(home).as_posix(), len(order)), p.as_posix()))
        self.progress.start("Dagster instance", len(files), sum(p.stat().st_size for p in files))
        self.objects.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="sqlite-", dir=self.objects.tmp))
        for db in dbs:
            copy = scratch / uuid.uuid4().hex
            try:
                _sqlite_copy(db, copy)
            except sqlite3.OperationalError:
                if db.exists():
                    raise
                continue  # deleted since the listing (a forgotten media's run)
            with open(copy, "rb") as fh:
                self.add_stream(f"dagster/{db.relative_to(home).as_posix()}", fh.read)
            copy.unlink()
        for p in files:
            if p.suffix == ".db":
                continue
            rel = p.relative_to(home).as_posix()
            if rel == "dagster.yaml" or not any(part.startswith(".") for part in p.relative_to(home).parts):
                self.add_file(f"dagster/{rel}", p)
        shutil.rmtree(scratch, ignore_errors=True)

    def postgres(self, pg: PgConnection) -> None:
        self.info["instance"] = "postgres"
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            raise BackupError(
                "the Dagster instance is on Postgres and pg_dump is not installed (apt-get install "
                "postgresql-client); nothing was backed up"
            )
        self.progress.start(f"Dagster instance (pg_dump of {pg.where()})")
        self.pg = pg
        dump = self.objects.tmp / "dagster.pgdump"
        self.objects.tmp.mkdir(parents=True, exist_ok=True)
        # one exported snapshot for the dump and for what the consistency check reads of the instance
        con = pg.connect()
        try:
            con.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with con.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = str(cur.fetchone()[0])
                done = subprocess.run([pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={dump}",
                                       f"--dbname={pg.url}"], capture_output=True, text=True, env=pg.env())  # fmt: skip
                if done.returncode != 0:
                    raise BackupError(f"pg_dump of {pg.where()} failed: {done.stderr.strip()}")
                self.pg_view = _pg_instance_view(cur)
        finally:
            con.close()
        with open(dump, "rb") as fh:
            self.add_stream("postgres/dagster.pgdump", fh.read)
        dump.unlink()
        home = self.dagster_home  # dagster.yaml and the rest (compute logs), without sqlite leftovers
        for p in sorted(home.rglob("*")):
            rel = p.relative_to(home)
            if p.suffix == ".db" or p.name.endswith(SQLITE_SIDE_FILES) or any(s.startswith(".") for s in rel.parts):
                continue
            self.add_file(f"dagster/{rel.as_posix()}", p)

    # Qdrant
    def qdrant(self) -> None:
        qdrant = _qdrant_resource()
        if not qdrant.embedded:
            self.qdrant_server(qdrant)
            return
        folder = Path(qdrant.path).expanduser().absolute()
        self.info["qdrant"] = "embedded"
        if not folder.is_dir():
            return
        with qdrant_folder_locked(qdrant):
            files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in QDRANT_SKIP)
            self.progress.start("Qdrant (embedded, folder locked)", len(files), sum(p.stat().st_size for p in files))
            for p in files:
                self.add_file(f"qdrant/{p.relative_to(folder).as_posix()}", p)

    def qdrant_server(self, qdrant: Any) -> None:
        import httpx
        from qdrant_client import QdrantClient

        url = qdrant.server_url.rstrip("/")
        self.info["qdrant"] = "server"
        headers = {"api-key": qdrant.api_key} if qdrant.api_key else {}
        client = QdrantClient(url=url, api_key=qdrant.api_key, check_compatibility=False)
        try:
            names = [c.name for c in client.get_collections().collections]
            self.progress.start(f"Qdrant server snapshots ({len(names)} collections)")
            for name in names:
                snap = client.create_snapshot(name, wait=True)
                assert snap is not None
                try:
                    with httpx.stream(
                        "GET", f"{url}/collections/{name}/snapshots/{snap.name}", headers=headers, timeout=600
                    ) as resp:
                        resp.raise_for_status()
                        chunks = resp.iter_bytes(CHUNK)

                        def read(_n: int, chunks: Iterator[bytes] = chunks) -> bytes:
                            return next(chunks, b"")

                        self.add_stream(f"qdrant-snapshots/{name}.snapshot", read)
                finally:
                    with suppress(Exception):
                        client.delete_snapshot(name, snap.name, wait=True)
        finally:
            client.close()

    # the store
    def store(self) -> None:
        store = self.paths.store
        if not store.is_dir():
            return
        first = [store / d for d in STORE_FIRST]
        listing: list[Path] = []
        for d in first:
            listing += sorted(p for p in d.rglob("*") if p.is_file()) if d.is_dir() else []
        rest: list[Path] = []
        for top in sorted(store.iterdir()):
            if top.name.startswith(".") or top in first:
                continue
            rest += [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        listing += rest
        files = [p for p in listing if not any(part.startswith(".") for part in p.relative_to(store).parts)]
        total = 0
        for p in files:
            with suppress(OSError):
                total += p.stat().st_size
        self.progress.start("store", len(files), total)
        from media_assets.plumbing import people_log, review_log
        from resources.store import MediaStore

        logs = {log.decisions_path(MediaStore(root=str(store))) for log in (people_log, review_log)}
        for p in files:
            rel = f"store/{p.relative_to(store).as_posix()}"
            if p in logs:  # decision logs are appended in place under a lock: copied under it, never mid-append
                with _flocked(p):
                    self.add_file(rel, p, reuse=False)
            else:
                self.add_file(rel, p)

    def config(self) -> None:
        cfg = self.paths.config_file
        if cfg.is_file():
            self.add_file("config/medialens.yaml", cfg)

    # consistency: manifests only where the instance copy agrees, partitions not forgotten meanwhile
    def check(self) -> list[str]:
        """Leave out manifests the instance copy does not back; returns the partitions of the instance
        copy (for the forget check)."""
        if self.info.get("instance") == "postgres" and self.pg_view is not None:
            partitions, everything = self.pg_view
            recorded = {a: everything.get(a, {}) for a in self._manifest_assets()}
        elif self.info.get("instance") != "sqlite" or "dagster/history/runs.db" not in self.entries:
            return []
        else:
            self.objects.tmp.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="instance-", dir=self.objects.tmp))
            for rel, e in self.entries.items():
                if rel.startswith("dagster/") and rel.endswith(".db"):
                    dest = scratch / rel.removeprefix("dagster/")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.objects.path(e.sha256), dest)
            try:
                partitions, recorded = _recorded(scratch, self._manifest_assets())
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        present = {rel.removeprefix("store/") for rel in self.entries if rel.startswith("store/")}
        store_prefix = str(self.paths.store) + "/"
        for rel in [r for r in self.entries if r.startswith("store/manifests/")]:
            parts = rel.split("/")
            if len(parts) != 4 or not parts[3].endswith(".json"):
                continue
            asset, key = parts[2], parts[3].removesuffix(".json")
            manifest = json.loads(self.objects.path(self.entries[rel].sha256).read_bytes())
            why = ""
            if asset in recorded and key != "library":
                version = recorded[asset].get(key, "<never>")
                if version != manifest.get("version"):
                    why = f"the instance copy records {asset} of {key} as {version}, not {manifest.get('version')}"
            # files only (a suffix): a folder named for artefacts may never have been made (audio)
            named = [
                s[len(store_prefix) :] for s in _strings(manifest) if s.startswith(store_prefix) and Path(s).suffix
            ]
            missing = [s for s in named if not _covered(s, present)]
            if missing and not why:
                why = f"it names {missing[0]}, which was replaced meanwhile"
            if why:
                del self.entries[rel]
                self.left_out.append(f"{rel}: {why}")
        return partitions

    def _manifest_assets(self) -> list[str]:
        return sorted({r.split("/")[2] for r in self.entries if r.startswith("store/manifests/") and r.count("/") == 3})

    def write(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        snapshot = {
            "format": FORMAT,
            "created": stamp,
            "home": str(self.paths.home),
            "store": str(self.paths.store),
            "qdrant_path": str(self.paths.qdrant),
            **self.info,
            "left_out": self.left_out,
            "files": [e.as_json() for e in sorted(self.entries.values(), key=lambda e: e.path)],
        }
        name = f"{stamp}.json"
        _write_atomic(self.root / SNAPSHOTS / name, json.dumps(snapshot, indent=1).encode())
        _write_atomic(self.root / LATEST, json.dumps({"snapshot": name}).encode())
        return name


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _covered(rel: str, present: set[str]) -> bool:
    """A file of the snapshot, or a folder some snapshot file lies in (an artefact folder)."""
    rel = rel.rstrip("/")
    return rel in present or any(p.startswith(rel + "/") for p in present)


def _recorded(base: Path, assets: list[str]) -> tuple[list[str], dict[str, dict[str, str | None]]]:
    """Partitions and per asset the recorded code version of each partition, from an instance copy."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
    from media_assets.plumbing.staleness import recorded_versions
    from media_assets.service.headless import storage_config

    (base / "dagster.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": False}, "storage": storage_config(base)})
    )
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(base))) as instance:
        partitions = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
        recorded = {a: recorded_versions(instance, AssetKey(a)) for a in assets}
    return partitions, recorded


def _pg_instance_view(cur: Any) -> tuple[list[str], dict[str, dict[str, str | None]]]:
    """The media partitions and, per asset, each partition's code version of its latest
    materialisation, read with SQL from Dagster's Postgres tables (dynamic_partitions, event_logs)
    in the cursor's transaction: the snapshot pg_dump copied. The same answer as _recorded() gives
    for a sqlite copy (staleness.recorded_versions: the highest event id per asset and partition)."""
    from dagster import AssetKey
    from dagster._core.events.log import EventLogEntry
    from dagster._serdes import deserialize_value

    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
    from media_assets.plumbing.staleness import CODE_VERSION_TAG

    cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s", (MEDIA_PARTITIONS_NAME,))
    partitions = [str(r[0]) for r in cur.fetchall()]
    cur.execute(
        "SELECT DISTINCT ON (asset_key, partition) asset_key, partition, event FROM event_logs "
        "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition IS NOT NULL "
        "ORDER BY asset_key, partition, id DESC"
    )
    recorded: dict[str, dict[str, str | None]] = {}
    for key_text, partition, event in cur.fetchall():
        key = AssetKey.from_db_string(key_text)
        if key is None:
            continue
        entry = deserialize_value(event, EventLogEntry)
        recorded.setdefault(key.to_user_string(), {})[partition] = (entry.tags or {}).get(CODE_VERSION_TAG)
    return partitions, recorded


def _live_partitions_pg(pg: PgConnection) -> set[str]:
    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME

    con = pg.connect()
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s", (MEDIA_PARTITIONS_NAME,)
            )
            return {str(r[0]) for r in cur.fetchall()}
    finally:
        con.close()


def _live_partitions(dagster_home: Path) -> set[str] | None:
    db = dagster_home / "history" / "runs" / "index.db"
    if not db.exists():
        return None
    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME

    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        rows = con.execute(
            "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = ?", (MEDIA_PARTITIONS_NAME,)
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return {r[0] for r in rows}


def _sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a live sqlite database (the online backup API, in one step)."""
    source = sqlite3.connect(f"{src.absolute().as_uri()}?mode=rw", uri=True, timeout=120)  # never creates one
    try:
        target = sqlite3.connect(str(dest))
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def qdrant_folder_locked(qdrant: Any) -> Iterator[Path]:
    """Hold the embedded Qdrant folder lock without opening a client: runs wait for it (and name
    this backup as the holder), so the folder is copied between sessions. Yields the folder."""
    from resources.qdrant import holder_note

    with holder_note("medialens backup"), qdrant.folder_locked() as folder:
        yield folder


def backup(root: Path, paths: Paths, progress: Progress, attempts: int = 3) -> dict[str, Any]:
    root = root.absolute()
    with _dir_lock(root):
        Objects(root).sweep_tmp()
        for attempt in range(1, attempts + 1):
            progress.files = progress.bytes = progress.copied_files = progress.copied_bytes = 0
            b = Backup(root, paths, progress)
            try:
                b.instance()
                b.qdrant()
                b.store()
                b.config()
                partitions = b.check()
                live = _live_partitions(b.dagster_home) if b.pg is None else _live_partitions_pg(b.pg)
                gone = sorted(set(partitions) - live) if live is not None else []
                if gone and attempt < attempts:
                    progress.say(f"backup: {', '.join(gone)} forgotten during the backup: starting over")
                    continue
                if gone:
                    raise BackupError(f"media forgotten during every attempt ({', '.join(gone)}): run backup again")
                for line in b.left_out:
                    progress.say(f"backup: left out {line}")
                name = b.write()
            finally:
                shutil.rmtree(b.objects.tmp, ignore_errors=True)
            files = len(b.entries)
            size = sum(e.size for e in b.entries.values())
            progress.say(f"backup: snapshot {name}: {files} files, {_human(size)} ({progress.status()})")
            return {"dir": str(root), "files": files, "bytes": size, "copied_files": progress.copied_files,
                    "copied_bytes": progress.copied_bytes}  # fmt: skip
    raise AssertionError("unreachable")


# -- restore ----------------------------------------------------------------------------------------
def _has_entries(folder: Path) -> bool:
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())


def _pg_tables(pg: PgConnection) -> list[str]:
    """The tables of a Postgres database outside the system schemas."""
    con = pg.connect()
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        con.close()


def _instance_holds_data(home: Path) -> bool:
    for db, table in (("history/runs.db", "runs"), ("history/runs/index.db", "dynamic_partitions")):
        if not (home / db).exists():
            continue
        con = sqlite3.connect(f"{(home / db).as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            with suppress(sqlite3.Error):
                if con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                    return True
        finally:
            con.close()
    return False


def _refuse_non_empty(paths: Paths, dagster_home: Path, pg: PgConnection | None = None) -> None:
    for marker in (paths.home / RESTORE_MARKER, dagster_home / RESTORE_MARKER):
        if marker.exists():
            raise RestoreRefused(
                f"an earlier restore into {paths.home} was interrupted ({marker}): remove {paths.home} and "
                f"{dagster_home}, then restore again"
            )
    if _has_entries(paths.store):
        raise RestoreRefused(f"{paths.store} already holds a store: restore only into an empty MEDIALENS_HOME")
    if _has_entries(paths.qdrant):
        raise RestoreRefused(f"{paths.qdrant} already holds Qdrant data: restore only into an empty MEDIALENS_HOME")
    if pg is not None:
        tables = _pg_tables(pg)
        if tables:
            raise RestoreRefused(
                f"the Postgres database {pg.where()} the restored instance would use already holds "
                f"{len(tables)} tables ({', '.join(tables[:3])}{', ...' if len(tables) > 3 else ''}): restore only "
                "into an empty database (createdb a new one and name it in DAGSTER_HOME's dagster.yaml)"
            )
    elif dagster_home.is_dir() and _instance_holds_data(dagster_home):
        raise RestoreRefused(
            f"the Dagster instance at {dagster_home} already holds runs or media: restore only into an empty "
            "DAGSTER_HOME"
        )


def _copy_verified(objects: Objects, entry: dict[str, Any], dest: Path) -> None:
    src = objects.path(entry["sha256"])
    if not src.is_file():
        raise BackupError(f"{entry['path']}: its blob {src} is missing from the backup")
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh, open(dest, "xb") as out:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            _write_sparse(out, chunk)
            size += len(chunk)
        out.truncate(size)
        out.flush()
        os.fsync(out.fileno())
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise BackupError(
            f"{entry['path']}: its blob {src} is corrupt ({size} bytes, sha256 {digest.hexdigest()[:12]}…; the "
            f"snapshot says {entry['size']} bytes, sha256 {entry['sha256'][:12]}…): nothing was restored"
        )


def _json_safe(text: str) -> bool:
    return json.dumps(text)[1:-1] == text


def _rewrite_text(path: Path, old: str, new: str) -> None:
    data = path.read_bytes()
    if old.encode() in data:
        path.write_bytes(data.replace(old.encode(), new.encode()))


def _rewrite_parquet(path: Path, old: str, new: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if not any(pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in schema):
        return
    table = pq.read_table(path)
    columns, changed = [], False
    for col in table.columns:
        if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) and pc.any(
            pc.match_substring(col, old)
        ).as_py():
            col, changed = pc.replace_substring(col, old, new), True
        columns.append(col)
    if changed:
        pq.write_table(pa.Table.from_arrays(columns, schema=table.schema), path)


def _rewrite_sqlite(path: Path, old: str, new: str) -> None:
    con = sqlite3.connect(str(path))
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _cid, name, ctype, *_ in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "CHAR" in ctype.upper() or "TEXT" in ctype.upper() or "CLOB" in ctype.upper() or not ctype:
                    con.execute(
                        f'UPDATE "{table}" SET "{name}" = REPLACE("{name}", ?, ?) WHERE instr("{name}", ?) > 0',
                        (old, new, old),
                    )
        con.commit()
    finally:
        con.close()


def _place(stage: Path, dest: Path) -> None:
    """Move every entry of `stage` into `dest` (replacing empty leftovers of a fresh home)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(stage.iterdir()):
        target = dest / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.rename(item, target)


def restore(root: Path, paths: Paths, progress: Progress) -> dict[str, Any]:
    root = root.absolute()
    snapshot = load_snapshot(root)
    if snapshot is None:
        raise BackupError(f"{root} holds no snapshot ({root / LATEST} missing): nothing to restore")
    if snapshot.get("format") != FORMAT:
        raise BackupError(f"{root}: snapshot format {snapshot.get('format')} is not {FORMAT}")
    dagster_home = dagster_home_of(paths)
    pg, keep_yaml = _restore_target(root, snapshot, dagster_home)
    _refuse_non_empty(paths, dagster_home, pg)
    from media_assets.service.headless import earlier_instance_yamls, instance_yaml

    qdrant = _qdrant_resource()
    objects = Objects(root)
    entries: list[dict[str, Any]] = snapshot["files"]
    old_home, old_dagster = snapshot["home"], snapshot.get("dagster_home", "")
    paths.home.mkdir(parents=True, exist_ok=True)
    dagster_home.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    stage_home = paths.home / f".restore-{token}"
    stage_dagster = dagster_home / f".restore-{token}"
    server_snapshots: list[tuple[str, Path]] = []
    pg_dump: Path | None = None
    try:
        progress.start("verifying and staging", len(entries), sum(e["size"] for e in entries))
        for e in entries:
            area, _, rel = e["path"].partition("/")
            if area == "store":
                dest = stage_home / "store" / rel
            elif area == "qdrant":
                dest = stage_home / "qdrant" / rel
            elif area == "config":
                dest = stage_home / "config" / rel
            elif area == "dagster":
                dest = stage_dagster / rel
            elif area == "qdrant-snapshots":
                dest = stage_home / "qdrant-snapshots" / rel
                server_snapshots.append((rel.removesuffix(".snapshot"), dest))
            elif area == "postgres":
                dest = pg_dump = stage_home / "postgres" / rel
            else:
                raise BackupError(f"{e['path']}: unknown area in the snapshot")
            _copy_verified(objects, e, dest)
            progress.add(e["size"], True)

        # paths of the old home, as the new home has them
        progress.start("rewriting paths for the new home")
        moves = [(old_home.rstrip("/") + "/", str(paths.home).rstrip("/") + "/")]
        if old_dagster:
            moves.append((old_dagster.rstrip("/") + "/", str(dagster_home).rstrip("/") + "/"))
        moves = [(o, n) for o, n in moves if o != n and _json_safe(o) and _json_safe(n)]
        for old, new in moves:
            for p in (stage_home / "store").rglob("*") if (stage_home / "store").is_dir() else []:
                if p.suffix in (".json", ".jsonl"):
                    _rewrite_text(p, old, new)
                elif p.suffix == ".parquet":
                    _rewrite_parquet(p, old, new)
            for p in stage_dagster.rglob("*.db"):
                _rewrite_sqlite(p, old, new)

        # dagster.yaml for this DAGSTER_HOME
        staged_yaml = stage_dagster / "dagster.yaml"
        if keep_yaml:  # the Postgres instance this DAGSTER_HOME's own dagster.yaml names
            staged_yaml.unlink(missing_ok=True)
        elif staged_yaml.exists():
            text = staged_yaml.read_text()
            old_path = Path(old_dagster) if old_dagster else dagster_home
            if text == instance_yaml(old_path) or text in earlier_instance_yamls(old_path):
                text = instance_yaml(dagster_home)
            elif old_dagster:
                text = text.replace(old_dagster, str(dagster_home))
            staged_yaml.write_text(text)
        elif snapshot.get("instance") == "sqlite":
            staged_yaml.parent.mkdir(parents=True, exist_ok=True)
            staged_yaml.write_text(instance_yaml(dagster_home))

        # in place: store and Qdrant first, the instance last (it is what claims materialisations)
        progress.start("putting the restored library in place")
        (paths.home / RESTORE_MARKER).write_text(f"restore of {root} started {datetime.now(UTC).isoformat()}\n")
        if (stage_home / "store").is_dir():
            if paths.store.exists():
                shutil.rmtree(paths.store)
            os.rename(stage_home / "store", paths.store)
        if (stage_home / "qdrant").is_dir():
            if not qdrant.embedded:
                progress.say("restore: the snapshot holds an embedded Qdrant folder, but QDRANT_URL is set")
            if paths.qdrant.exists():
                shutil.rmtree(paths.qdrant)
            os.rename(stage_home / "qdrant", paths.qdrant)
        for name, file in server_snapshots:
            _upload_qdrant_snapshot(qdrant, name, file)
        config = stage_home / "config" / "medialens.yaml"
        if config.exists():
            if not paths.config_file.exists():
                paths.config_file.parent.mkdir(parents=True, exist_ok=True)
                os.rename(config, paths.config_file)
            elif paths.config_file.read_bytes() != config.read_bytes():
                progress.say(f"restore: {paths.config_file} differs from the backed-up settings; kept as it is")
        if pg_dump is not None:
            if pg is None:
                raise BackupError("the snapshot holds a Postgres dump but no Postgres instance to restore it into")
            _pg_restore(pg, pg_dump)
            progress.start(f"rewriting paths in the Postgres database {pg.where()}")
            _rewrite_postgres(pg, moves)
        if stage_dagster.is_dir():
            for side in [p for p in dagster_home.rglob("*") if p.is_file() and stage_dagster not in p.parents]:
                if side.suffix == ".db" or side.name.endswith(SQLITE_SIDE_FILES):
                    side.unlink()  # an empty instance a command had created here
            _place(stage_dagster, dagster_home)
        if (dagster_home / "history" / "runs.db").exists() or pg_dump is not None:
            _end_interrupted_runs(paths, progress)
        (paths.home / RESTORE_MARKER).unlink()
    finally:
        shutil.rmtree(stage_home, ignore_errors=True)
        shutil.rmtree(stage_dagster, ignore_errors=True)
    total = sum(e["size"] for e in entries)
    progress.say(f"restore: {len(entries)} files, {_human(total)} verified and restored from {snapshot['created']}")
    return {"dir": str(root), "files": len(entries), "bytes": total, "verified": True}


def _end_interrupted_runs(paths: Paths, progress: Progress) -> None:
    """Runs in progress at backup time never finish in the restored instance: end them now."""
    from dagster._core.storage.dagster_run import RunsFilter

    from media_assets.plumbing.dead_runs import ACTIVE_STATUSES, end_run
    from media_assets.service.headless import dagster_instance

    instance = dagster_instance(paths)
    for record in instance.get_run_records(RunsFilter(statuses=ACTIVE_STATUSES)):
        end_run(instance, record.dagster_run, "it was in progress when the backup was taken")
        progress.say(f"restore: ended run {record.dagster_run.run_id}: in progress when the backup was taken")


def _upload_qdrant_snapshot(qdrant: Any, name: str, file: Path) -> None:
    """Recover a collection on the Qdrant server from its snapshot (untested here: no server)."""
    import httpx

    url = qdrant.server_url.rstrip("/")
    headers = {"api-key": qdrant.api_key} if qdrant.api_key else {}
    with open(file, "rb") as fh:
        resp = httpx.post(
            f"{url}/collections/{name}/snapshots/upload",
            params={"priority": "snapshot", "wait": "true"},
            files={"snapshot": (file.name, fh, "application/octet-stream")},
            headers=headers,
            timeout=3600,
        )
    if resp.status_code >= 300:
        raise BackupError(f"Qdrant server at {url}: recovering collection {name!r} failed: {resp.text[:300]}")


def _restore_target(root: Path, snapshot: dict[str, Any], dagster_home: Path) -> tuple[PgConnection | None, bool]:
    """The Postgres database a restore loads the snapshot's dump into, and whether DAGSTER_HOME's own
    dagster.yaml names it (then that file is kept): DAGSTER_HOME's dagster.yaml when it configures
    Postgres, else the backed-up one (its env values from this environment). (None, False) for a
    sqlite snapshot; a sqlite snapshot into a home configured for Postgres is refused."""
    target = postgres_config(dagster_home / "dagster.yaml")
    if snapshot.get("instance") != "postgres":
        if target is not None and snapshot.get("instance") == "sqlite":
            raise BackupError(
                f"the snapshot holds a sqlite instance but {dagster_home}/dagster.yaml configures Postgres "
                f"({target.where()}): restore into a DAGSTER_HOME without a dagster.yaml"
            )
        return None, False
    if target is not None:
        return target, True
    saved = [e for e in snapshot["files"] if e["path"] == "dagster/dagster.yaml"]
    if not saved:
        raise BackupError(
            f"the snapshot holds a Postgres instance but no dagster.yaml: put one naming an empty database "
            f"into {dagster_home}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        _copy_verified(Objects(root), saved[0], Path(tmp) / "dagster.yaml")
        backed_up = postgres_config(Path(tmp) / "dagster.yaml")
    if backed_up is None:
        raise BackupError("the snapshot holds a Postgres dump but its dagster.yaml configures no Postgres storage")
    return backed_up, False


def _pg_restore(pg: PgConnection, dump: Path) -> None:
    """Load a pg_dump into the (empty, checked before) Postgres database of the restored instance."""
    tool = shutil.which("pg_restore")
    if tool is None:
        raise BackupError("pg_restore is not installed (apt-get install postgresql-client)")
    done = subprocess.run([tool, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                           f"--dbname={pg.url}", str(dump)], capture_output=True, text=True, env=pg.env())  # fmt: skip
    if done.returncode != 0:
        raise BackupError(f"pg_restore into {pg.where()} failed: {done.stderr.strip()}")


def _rewrite_postgres(pg: PgConnection, moves: list[tuple[str, str]]) -> None:
    """The old home's paths in every text column of the restored database, as _rewrite_sqlite does."""
    if not moves:
        return
    from psycopg2 import sql

    con = pg.connect()
    try:
        with con, con.cursor() as cur:
            cur.execute(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
                "AND data_type IN ('text', 'character varying', 'character') ORDER BY 1, 2, 3"
            )
            for schema, table, column in cur.fetchall():
                col = sql.Identifier(column)
                for old, new in moves:
                    cur.execute(
                        sql.SQL("UPDATE {} SET {} = replace({}, %s, %s) WHERE strpos({}, %s) > 0").format(
                            sql.Identifier(schema, table), col, col, col
                        ),
                        (old, new, old),
                    )
    finally:
        con.close()


# -- the commands -----------------------------------------------------------------------------------
def cmd_backup(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    progress = Progress("backup")
    try:
        out = backup(Path(args.dir), paths, progress)
    except (BackupError, OSError, sqlite3.Error) as exc:
        _err(f"backup: {exc}")
        return 1
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"backed up {out['files']} files ({_human(out['bytes'])}; {out['copied_files']} new, "
              f"{_human(out['copied_bytes'])}) into {out['dir']}")  # fmt: skip
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    progress = Progress("restore")
    try:
        out = restore(Path(args.dir), paths, progress)
    except RestoreRefused as exc:
        _err(f"restore: {exc}")
        return 2
    except (BackupError, OSError, sqlite3.Error, ValueError) as exc:
        _err(f"restore: {exc}")
        return 1
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"restored {out['files']} files ({_human(out['bytes'])}, all verified) from {out['dir']}")
    return 0


def register(sub: Any) -> None:
    """Add `backup DIR` and `restore DIR` to the CLI's subparsers (media_assets/cli.py)."""
    b = sub.add_parser("backup", help="snapshot the library (instance, Qdrant, store) into DIR, incrementally")
    b.add_argument("dir", metavar="DIR")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser("restore", help="restore DIR's latest snapshot into an empty MEDIALENS_HOME")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_restore)
