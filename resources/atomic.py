"""Store writes that nobody ever sees half done, and whose leftovers the next run can find.

Any process may be SIGKILLed at any moment (the OOM killer, a daemon restart, a closed terminal), so
a file or folder of the store only ever appears by a rename, complete. What is still being written
lives in this process's scratch folder, `<store>/.scratch/<host>-<pid>-<start>/`: on the store's
filesystem, so the final rename is atomic, and named after its owner, so `sweep_scratch` can tell the
leftovers of a dead process from the work of a live one (a pid alone could have been reused). A target
on another filesystem (a store subfolder symlinked elsewhere) cannot be renamed into from there; it
gets a dotted temporary name beside it instead, which a kill can leave behind.

Files are fsynced before the rename, so a power loss may lose the rename but never shows a file
without its bytes. A full disk (ENOSPC, EDQUOT) becomes `StoreFull`, naming the target, the bytes it
needs and the bytes free, once the leftovers of the failed write are removed.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from resources.workers import Liveness, Worker, this_worker

SCRATCH_DIR = ".scratch"  # dotted: code that walks the store skips it like any hidden entry
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
Approx = Literal["exact", "about", "at least"]

_RENAME_EXCHANGE = 2  # linux/fs.h: swap two existing paths in one step
_AT_FDCWD = -100


def is_no_space(exc: BaseException) -> bool:
    """Whether an error means the filesystem (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


class StoreFull(OSError):
    """No room in the store for a write. An OSError (errno ENOSPC), so code that fails one partition
    on I/O errors fails it on this one too; its message is written for the user who must free space."""

    def __init__(
        self,
        target: Path,
        needed: int | None,
        free: int,
        where: Path,
        what: str = "",
        approx: Approx = "exact",
    ) -> None:
        self.target, self.needed, self.free, self.where = Path(target), needed, free, Path(where)
        self.what, self.approx = what, approx
        if needed is None:
            need = f"needs more than {free} bytes"
        else:
            need = "needs " + ("" if approx == "exact" else f"{approx} ") + f"{needed} bytes"
        about = f" ({what})" if what else ""
        self.message = (
            f"store full: writing {target}{about} {need}, {free} bytes free on {where} (free space and run again)"
        )
        super().__init__(errno.ENOSPC, self.message, str(target))

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[StoreFull], tuple[Path, int | None, int, Path, str, Approx]]:
        # OSError pickles as (errno, strerror, filename), which is not this constructor
        return (StoreFull, (self.target, self.needed, self.free, self.where, self.what, self.approx))


# -- this process's scratch folder --------------------------------------------------------------------
def scratch_base(root: Path) -> Path:
    """The folder holding every process's scratch folder."""
    return root / SCRATCH_DIR


def scratch_name(worker: Worker) -> str:
    return f"{worker.host}-{worker.pid}-{worker.started:.2f}"


def worker_of(name: str) -> Worker | None:
    """The process a scratch folder belongs to (None for a name that is not one of ours)."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        return Worker(parts[0], int(parts[1]), float(parts[2]))
    except ValueError:
        return None


_exit_cleanup: set[tuple[int, Path]] = set()


def _remove_if_empty(pid: int, folder: Path) -> None:
    if os.getpid() != pid:  # a forked child inherits the handler, not the folder
        return
    with suppress(OSError):  # not empty (a write was cut short) or gone: the next sweep decides
        folder.rmdir()


def scratch_folder(root: Path) -> Path:
    """This process's scratch folder (created on first use; a forked child gets its own). A clean
    exit removes it when empty; anything else is for `sweep_scratch` once the process is gone."""
    folder = scratch_base(root) / scratch_name(this_worker())
    folder.mkdir(parents=True, exist_ok=True)
    key = (os.getpid(), folder)
    if key not in _exit_cleanup:
        _exit_cleanup.add(key)
        atexit.register(_remove_if_empty, *key)
    return folder


def sweep_scratch(root: Path) -> list[Path]:
    """Remove the scratch folders of processes that are gone from this host; returns them.

    A live process's folder holds writes in progress, and another host's pids mean nothing here
    (a store shared over the network), so both are kept. Cheap: one listing of a small folder.
    """
    base = scratch_base(root)
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    removed: list[Path] = []
    for entry in entries:
        worker = worker_of(entry.name)
        if worker is None or not entry.is_dir(follow_symlinks=False):
            continue
        if worker.liveness() is not Liveness.GONE:
            continue
        path = Path(entry.path)
        shutil.rmtree(path, ignore_errors=True)  # another run's sweep may be at it too
        if not path.exists():
            removed.append(path)
    return removed


# -- building blocks ----------------------------------------------------------------------------------
def _same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def _beside(target: Path) -> Path:
    return target.parent / f".{target.name[:120]}.{uuid.uuid4().hex[:12]}.tmp"


def temp_path(root: Path, target: Path) -> Path:
    """A fresh, unused name to build `target` under: in the scratch folder when that is on the
    target's filesystem (the rename into place is then atomic), else beside the target. Dotted,
    so it never matches a partition key (`forget` and pruning look for `<key>` and `<key>.*`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = scratch_folder(root)
    if _same_filesystem(folder, target.parent):
        return folder / f".{uuid.uuid4().hex[:12]}-{target.name[:120]}"
    return _beside(target)


def fsync_path(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then the folders: one pass before the folder is swapped in.
    Cheap next to what fills them (measured here: 50 JPEGs of 150 kB, 17 ms; their encoding, seconds)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def remove_path(path: Path | None) -> None:
    """Delete a file or folder if it is there (a symlink itself, never what it points at)."""
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def size_of(path: Path | None) -> int:
    """Bytes under a file or folder (what a failed write had managed to write)."""
    if path is None or not path.exists():
        return 0
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged write can still use on `path`'s filesystem."""
    st = os.statvfs(_existing(path))
    return st.f_bavail * st.f_frsize


def store_full(root: Path, target: Path, needed: int | None, what: str = "", approx: Approx = "exact") -> StoreFull:
    """The error for a write to `target` that did not fit, with the free space as it is now (after
    the failed write's leftovers went), on the store root when that is the target's filesystem."""
    near = _existing(target.parent)
    on_root = root.exists() and near.is_relative_to(root) and _same_filesystem(near, root)
    where = root if on_root else near
    return StoreFull(target, needed, free_bytes(where), where, what, approx)


def ensure_room(root: Path, target: Path, needed: int, what: str = "") -> None:
    """Refuse a write of `needed` bytes up front when the filesystem cannot take it (before a
    copy of an original that would fill the disk for everybody, then fail)."""
    if free_bytes(target.parent) < needed:
        raise store_full(root, target, needed, what)


@cache
def _renameat2() -> Any:
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (renameat2 RENAME_EXCHANGE); False where the kernel,
    libc or filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_dir(root: Path, new: Path, target: Path) -> None:
    """Put folder `new` at `target`; the old folder stays complete until the new one is there."""
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        remove_path(new)  # holds the old folder now
        return
    # No atomic exchange: the old folder goes aside (a kill in between leaves the target missing
    # for a moment, never half filled) and is deleted from there; a sweep removes it if we die.
    aside = temp_path(root, target)
    os.rename(target, aside)
    os.rename(new, target)
    remove_path(aside)


def _put_in_place(root: Path, tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` to `target`; across filesystems (a bind mount the device numbers
    did not reveal), copy it beside the target first."""
    try:
        if tmp.is_dir():
            _swap_dir(root, tmp, target)
        else:
            os.replace(tmp, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    beside = _beside(target)
    try:
        if tmp.is_dir():
            shutil.copytree(tmp, beside)
            fsync_tree(beside)
            _swap_dir(root, beside, target)
        else:
            shutil.copyfile(tmp, beside)
            fsync_path(beside)
            os.replace(beside, target)
    finally:
        remove_path(beside)
        remove_path(tmp)


# -- the writes ---------------------------------------------------------------------------------------
@contextmanager
def atomic_file(
    root: Path, target: Path, *, needed: int | None = None, approx: Approx = "exact", what: str = ""
) -> Iterator[Path]:
    """Yield a fresh path to write `target`'s new content to. When the block ends the file is
    fsynced and renamed over `target`; when it raises, the file is removed (a full disk becomes
    StoreFull). A block that writes nothing leaves `target` as it was.

    `needed`: the bytes the write takes, for the StoreFull message (None: what the failed write had
    written, as "at least")."""
    tmp: Path | None = None
    try:
        tmp = temp_path(root, target)
        yield tmp
        if os.path.lexists(tmp):
            fsync_path(tmp)
            _put_in_place(root, tmp, target)
    except BaseException as exc:
        _fail(root, target, tmp, exc, needed, approx, what)
        raise


@contextmanager
def atomic_dir(root: Path, target: Path, *, what: str = "") -> Iterator[Path]:
    """Yield an empty folder to fill; when the block ends it replaces the folder `target` in one
    step (the old one stays complete until then, and is deleted after). When the block raises, the
    new folder is removed and `target` is untouched. Write paths that point into it as they will be
    once it is in place: under `target`."""
    tmp: Path | None = None
    try:
        tmp = temp_path(root, target)
        tmp.mkdir()
        yield tmp
        fsync_tree(tmp)
        _put_in_place(root, tmp, target)
    except BaseException as exc:
        _fail(root, target, tmp, exc, None, "at least", what)
        raise


def _fail(
    root: Path, target: Path, tmp: Path | None, exc: BaseException, needed: int | None, approx: Approx, what: str
) -> None:
    """Remove what a failed write left; turn a full disk into StoreFull (raised from `exc`)."""
    written = size_of(tmp) if is_no_space(exc) else 0
    remove_path(tmp)
    if not is_no_space(exc) or isinstance(exc, StoreFull):
        return
    if needed is None and written > 0:
        needed, approx = written, "at least"
    raise store_full(root, target, needed, what, approx) from exc


def write_bytes(root: Path, target: Path, data: bytes | memoryview | pa.Buffer, what: str = "") -> None:
    """Replace `target` with `data`, all or nothing."""
    view = memoryview(data)
    with atomic_file(root, target, needed=view.nbytes, what=what) as tmp, open(tmp, "xb") as fh:
        fh.write(view)


def encode_table(table: pa.Table) -> pa.Buffer:
    """The Parquet bytes of `table`, in memory: their size is what a full disk's message needs."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue()


def write_table(root: Path, target: Path, table: pa.Table, what: str = "") -> None:
    """Replace `target` with `table` as Parquet, all or nothing."""
    write_bytes(root, target, encode_table(table), what)


def place_file(root: Path, src: Path, target: Path, how: Literal["link", "copy", "move"], what: str = "") -> None:
    """Put `src`'s bytes at `target`, whole or not at all.

    `move` renames when it can, so the bytes are always either at `src` or at `target` (a detour
    through scratch would lose them to a sweep after a kill in between), and deletes `src` only
    once its copy is in place. `link` hard-links and copies where it cannot. A copy that cannot fit
    is refused before it starts."""
    size = src.stat().st_size
    if how == "move":
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fsync_path(src)
            os.replace(src, target)
            return
        except OSError as exc:
            if is_no_space(exc):
                raise store_full(root, target, size, what) from exc
            if exc.errno != errno.EXDEV:
                raise
        _copy_in(root, src, target, size, what)
        src.unlink()
        return
    if how == "link":
        try:
            with atomic_file(root, target, needed=size, what=what) as tmp:
                os.link(src, tmp)
            return
        except StoreFull:
            raise
        except OSError:
            pass  # another filesystem, or links not allowed here: copy
    _copy_in(root, src, target, size, what)


def _copy_in(root: Path, src: Path, target: Path, size: int, what: str) -> None:
    ensure_room(root, target, size, what)
    with atomic_file(root, target, needed=size, what=what) as tmp:
        shutil.copyfile(src, tmp)


__all__ = [
    "NO_SPACE",
    "SCRATCH_DIR",
    "StoreFull",
    "atomic_dir",
    "atomic_file",
    "encode_table",
    "ensure_room",
    "free_bytes",
    "fsync_path",
    "fsync_tree",
    "is_no_space",
    "place_file",
    "remove_path",
    "scratch_base",
    "scratch_folder",
    "store_full",
    "sweep_scratch",
    "temp_path",
    "worker_of",
    "write_bytes",
    "write_table",
]
