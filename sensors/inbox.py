"""Inbox housekeeping for the upload sensor, free of Dagster: list, wait for stable, take, set aside.

A file is taken only when nothing about it changed between two looks (size, mtime, inode and
ctime: a rewrite, an append, a `touch`, a rename over it all show), and it has been seen unchanged
for at least the settle time by our own clock (the file system's clock may be another machine's).
A local file is taken at its first look when its ctime, which every write, rename or `touch`
moves, is at least the quiet time old by the file system's own clock: the ctime of a dotfile in
the inbox touched just before the listing. Partial-download names and dotfiles are never looked at.

Every move here is crash-safe for a SIGKILL at any instant: the file is at its old place or at its
new one, never half in both, and a note is reserved before the file it describes is moved.

`InboxSource` is what the sensor's intake sees of an inbox: `LocalInbox` (this folder's functions)
or `sensors.s3_inbox.S3Inbox` (an S3 prefix: objects are downloaded into the store's scratch
folder to be checked, and copied/deleted instead of renamed). Both give the same semantics.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

REJECTED_DIR = "rejected"
DUPLICATES_DIR = "duplicates"
RESERVED_DIRS = {REJECTED_DIR, DUPLICATES_DIR}
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")
NOTE_SUFFIX = ".reason.txt"

Signature = tuple[int, int, int, int]  # (size, mtime_ns, inode, ctime_ns)
# What a look saw of a candidate: a local Signature, or an S3 object's (size, last_modified_ms, etag).
# Always (size, modification time, ...): the stability check only compares them whole.
Look = tuple[int | str, ...]


class FileChanged(Exception):
    """The file at a path is no longer the one that was looked at and admitted."""


@dataclass(frozen=True)
class Candidate:
    """A file in the inbox, with its signature at this look and since when (ms) we see it so.

    `path` is the file on disk for a local inbox; for an S3 inbox it is only `rel` (the object's key
    under the prefix) and never opened."""

    path: Path
    rel: str
    signature: Look
    seen_ms: int = 0

    @property
    def size(self) -> int:
        return int(self.signature[0])

    @property
    def modified(self) -> int:
        return int(self.signature[1])

    @property
    def changed_ns(self) -> int | None:
        """When the file last changed by its file system's clock (a local file's ctime); None for an
        S3 object, whose listing shows only complete uploads and no clock to compare with."""
        return int(self.signature[3]) if len(self.signature) == 4 else None

    @property
    def name(self) -> str:
        return PurePosixPath(self.rel).name

    def cursor_entry(self) -> list[int | str]:
        """What the cursor remembers of it: the signature and since when it is unchanged."""
        return [*self.signature, self.seen_ms]


def is_ignored_name(name: str) -> bool:
    """Dotfiles and names of files still being written (browsers, rsync, editors)."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def signature_of(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def look(path: Path) -> Signature | None:
    """The file's signature now (not following links), None once it is gone."""
    try:
        return signature_of(path.lstat())
    except FileNotFoundError:
        return None


def list_inbox(root: Path) -> Iterator[Candidate]:
    """Every candidate file under the inbox, oldest first; reserved and hidden folders skipped."""
    found: list[Candidate] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in RESERVED_DIRS and not d.startswith(".")]
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        links_to_dirs = [d for d in dirnames if (here / d).is_symlink()]
        for name in [*filenames, *links_to_dirs]:
            if is_ignored_name(name):
                continue
            path = here / name
            sig = look(path)
            if sig is None:  # removed while we looked
                continue
            found.append(Candidate(path, path.relative_to(root).as_posix(), sig))
    found.sort(key=lambda c: (c.modified, c.rel))
    yield from found


CLOCK_NAME = ".medialens-clock"


def fs_clock_ns(root: Path) -> int | None:
    """The inbox file system's clock now: the ctime of a dotfile created (or touched) in it now, and
    removed again. On a network share that is the server's clock, whatever this machine's says.
    None when the inbox cannot be written."""
    probe = root / CLOCK_NAME
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        os.utime(fd)  # an existing one (left by a killed tick) is touched: its ctime is now as well
        return os.fstat(fd).st_ctime_ns
    except OSError:
        return None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def split_stable(
    candidates: list[Candidate],
    previous: Mapping[str, list[int | str]],
    now_ms: int,
    settle_ms: int = 0,
    quiet_before_ns: int | None = None,
) -> tuple[list[Candidate], dict[str, list[int | str]]]:
    """Files unchanged since the last look, and for at least `settle_ms`, are stable, first seen
    first (so a steady stream of new drops never starves an older one); so is a file that has not
    changed since `quiet_before_ns` by its file system's clock (None: none is, on its first look).
    The rest are remembered for the next look. An entry of an earlier cursor format never matches:
    one more look."""
    stable: list[Candidate] = []
    pending: dict[str, list[int | str]] = {}
    for c in candidates:
        before = previous.get(c.rel) or []
        same = len(before) == len(c.signature) + 1 and tuple(before[:-1]) == c.signature and isinstance(before[-1], int)
        seen = replace(c, seen_ms=int(before[-1]) if same else now_ms)
        quiet = quiet_before_ns is not None and c.changed_ns is not None and c.changed_ns <= quiet_before_ns
        if quiet or (same and now_ms - seen.seen_ms >= settle_ms):
            stable.append(seen)
        else:
            pending[c.rel] = seen.cursor_entry()
    stable.sort(key=lambda c: (c.seen_ms, c.modified, c.rel))
    return stable, pending


def symlink_problem(path: Path, root: Path) -> str | None:
    """Why a symlink is not taken (we never follow links out of, or around, the inbox)."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    try:
        target.relative_to(Path(os.path.realpath(root)))
    except ValueError:
        return f"symbolic link pointing outside the inbox ({target}); copy the file in instead"
    return "symbolic link inside the inbox; the file it points to is picked up on its own"


def _numbered(name: str, n: int) -> str:
    stem, dot, ext = name.partition(".")
    return f"{stem} ({n}){dot}{ext}"


def _free_name(folder: Path, name: str) -> Path:
    dest = folder / name
    n = 2
    while dest.exists() or dest.is_symlink():
        dest = folder / _numbered(name, n)
        n += 1
    return dest


def _move(src: Path, dest: Path) -> None:
    """Rename (a symlink as a link, never followed); across file systems, shutil's copy + delete."""
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dest)


def set_aside(path: Path, root: Path, folder: str, reason: str) -> Path:
    """Move a refused or duplicate file into `<inbox>/<folder>/` with `<name>.reason.txt` beside it.

    The note is created first, exclusively, and reserves the name: two files of the same name (from
    two subfolders, or a file already set aside earlier) never overwrite each other, and a kill
    between the two steps leaves at worst a note without its file (the file is still in the inbox
    and is set aside again, under the next free name), never a file without its note.
    """
    target_dir = root / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        dest = target_dir / (path.name if n == 1 else _numbered(path.name, n))
        n += 1
        note = dest.parent / f"{dest.name}{NOTE_SUFFIX}"
        try:
            fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(reason.rstrip() + "\n")
        if dest.exists() or dest.is_symlink():  # a file put there by hand, without a note
            note.unlink()
            continue
        try:
            _move(path, dest)
        except BaseException:
            note.unlink(missing_ok=True)
            raise
        return dest


def take_file(src: Path, dest: Path, signature: Look, sha256: str) -> None:
    """Move an admitted file out of the inbox to `dest`, all or nothing.

    Raises FileChanged, leaving the file in the inbox, when what is at `src` is not the file that
    was admitted (replaced or rewritten since): it is looked at again on the next ticks. On the
    same file system a rename moves the very inode that was looked at, checked afterwards; across
    file systems the copy is hashed as it is written and only renamed into place if it matches.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_verified(src, dest, sha256)
        src.unlink()
        return
    st = dest.lstat()
    if (st.st_size, st.st_mtime_ns, st.st_ino) != signature[:3]:
        # Replaced in the instant between the last look and the rename: give it back.
        _move(dest, _free_name(src.parent, src.name))
        raise FileChanged(f"{src} was replaced while it was being taken")


def _copy_verified(src: Path, dest: Path, sha256: str) -> None:
    tmp = dest.with_name(f".{dest.name}.taking")  # hidden: never mistaken for a taken file
    h = hashlib.sha256()
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while block := fin.read(1 << 20):
                h.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        if h.hexdigest() != sha256:
            raise FileChanged(f"{src} changed after it was admitted")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def taken_files(incoming: Path) -> list[tuple[str, Path]]:
    """(partition key, path) of each file a tick took into the store's incoming folder (named
    `<key><ext>`; keys have no dots), oldest first; temporary and foreign names are skipped."""
    if not incoming.is_dir():
        return []
    out: list[tuple[int, str, Path]] = []
    for entry in os.scandir(incoming):
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            ctime = entry.stat(follow_symlinks=False).st_ctime_ns
        except FileNotFoundError:  # taken into the store meanwhile
            continue
        out.append((ctime, entry.name.split(".", 1)[0], Path(entry.path)))
    out.sort()
    return [(key, path) for _, key, path in out]


# -- the inbox as the upload sensor's intake sees it ----------------------------------------------


class InboxSource(ABC):
    """Where the upload sensor finds new files and where it puts back what it refuses.

    The intake is the same for every kind of inbox (sensors/upload.py): list the candidates, keep
    the stable ones, `fetch` each as a local file to admit, then either `set_aside` it (rejected,
    duplicate) or write its source record and `take` it into `store/incoming/`."""

    #: how messages name the inbox and its folders ("inbox/", "s3://bucket/prefix/")
    where: str = "inbox/"
    #: what the last `candidates` call finished for an interrupted tick, for the sensor's log
    finished: list[str]
    #: what went wrong after a file was taken (it stays taken), for the sensor's log
    warnings: list[str]
    #: the inbox file system's clock (ns) just before the last `candidates` listing; None: no clock
    clock_ns: int | None = None

    def __init__(self) -> None:
        self.finished = []
        self.warnings = []

    def prepare(self) -> None:  # noqa: B027 (optional: most inboxes need nothing)
        """Make sure the inbox exists (a local folder is created)."""

    @abstractmethod
    def candidates(self, taken: Mapping[str, Mapping[str, Any]]) -> list[Candidate]:
        """Every file waiting in the inbox, oldest first (reserved folders and ignored names left
        out). `taken`: the source records of files in incoming/ (key -> record), for an inbox that
        must finish what an interrupted tick left undone. Raises OSError when the inbox cannot be
        listed."""

    def problem(self, c: Candidate) -> str | None:
        """Why `c` is refused before it is read at all (None: read it)."""
        return None

    @abstractmethod
    def fetch(self, c: Candidate) -> AbstractContextManager[Path]:
        """The bytes of `c` as a local file, for admission (removed after, unless taken). Raises
        FileChanged when `c` is gone or no longer what was listed."""

    @abstractmethod
    def look_again(self, c: Candidate) -> Look | None:
        """The candidate's signature now (after admission read it); None once it is gone."""

    @abstractmethod
    def set_aside(self, c: Candidate, folder: str, reason: str) -> str:
        """Move a refused or duplicate file to `<inbox>/<folder>/` with its `.reason.txt` note;
        returns where it went. Raises FileChanged when it is no longer what was listed."""

    @abstractmethod
    def take(self, c: Candidate, fetched: Path, dest: Path, sha256: str) -> None:
        """Take an admitted file (`fetched`: its bytes as admitted) into the store at `dest` (its
        source record is already written), all or nothing, and out of the inbox. Raises FileChanged,
        leaving the file in the inbox, when what is there is no longer what was admitted."""

    def record_extra(self, c: Candidate) -> dict[str, Any]:
        """What the source record must say about `c` beyond what registration writes (written with
        the record, before the file is taken)."""
        return {}

    @abstractmethod
    def set_aside_taken(self, path: Path, folder: str, reason: str) -> str:
        """Give a file of `store/incoming/` back to the user under `<inbox>/<folder>/` with a note
        (a taken file that cannot be registered); returns where it went."""


class LocalInbox(InboxSource):
    """A folder on disk (MEDIALENS_INBOX): files are renamed, never copied, when they can be."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.where = f"{root}/"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def candidates(self, taken: Mapping[str, Mapping[str, Any]]) -> list[Candidate]:
        self.finished = []
        self.clock_ns = fs_clock_ns(self.root)  # before the listing: a file changed after it is not quiet
        return list(list_inbox(self.root))

    def problem(self, c: Candidate) -> str | None:
        return symlink_problem(c.path, self.root)

    def fetch(self, c: Candidate) -> AbstractContextManager[Path]:
        return nullcontext(c.path)

    def look_again(self, c: Candidate) -> Look | None:
        return look(c.path)

    def set_aside(self, c: Candidate, folder: str, reason: str) -> str:
        return str(set_aside(c.path, self.root, folder, reason))

    def take(self, c: Candidate, fetched: Path, dest: Path, sha256: str) -> None:
        take_file(c.path, dest, c.signature, sha256)

    def set_aside_taken(self, path: Path, folder: str, reason: str) -> str:
        return str(set_aside(path, self.root, folder, reason))
