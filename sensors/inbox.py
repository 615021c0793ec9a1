"""Inbox housekeeping for the upload sensor, free of Dagster: list, wait for stable, take, set aside.

A file is taken only when nothing about it changed between two looks (size, mtime, inode and
ctime: a rewrite, an append, a `touch`, a rename over it all show), and it has been seen unchanged
for at least the settle time by our own clock (the file system's clock may be another machine's).
Partial-download names and dotfiles are never looked at.

Every move here is crash-safe for a SIGKILL at any instant: the file is at its old place or at its
new one, never half in both, and a note is reserved before the file it describes is moved.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

REJECTED_DIR = "rejected"
DUPLICATES_DIR = "duplicates"
RESERVED_DIRS = {REJECTED_DIR, DUPLICATES_DIR}
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")
NOTE_SUFFIX = ".reason.txt"

Signature = tuple[int, int, int, int]  # (size, mtime_ns, inode, ctime_ns)


class FileChanged(Exception):
    """The file at a path is no longer the one that was looked at and admitted."""


@dataclass(frozen=True)
class Candidate:
    """A file in the inbox, with its signature at this look and since when (ms) we see it so."""

    path: Path
    rel: str
    signature: Signature
    seen_ms: int = 0

    @property
    def size(self) -> int:
        return self.signature[0]

    def cursor_entry(self) -> list[int]:
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
    found.sort(key=lambda c: (c.signature[1], c.rel))
    yield from found


def split_stable(
    candidates: list[Candidate], previous: Mapping[str, list[int]], now_ms: int, settle_ms: int = 0
) -> tuple[list[Candidate], dict[str, list[int]]]:
    """Files unchanged since the last look, and for at least `settle_ms`, are stable, first seen
    first (so a steady stream of new drops never starves an older one); the rest are remembered
    for the next look. An entry of an earlier cursor format never matches: one more look."""
    stable: list[Candidate] = []
    pending: dict[str, list[int]] = {}
    for c in candidates:
        before = previous.get(c.rel) or []
        same = len(before) == len(c.signature) + 1 and tuple(before[:-1]) == c.signature
        seen = replace(c, seen_ms=before[-1] if same else now_ms)
        if same and now_ms - seen.seen_ms >= settle_ms:
            stable.append(seen)
        else:
            pending[c.rel] = seen.cursor_entry()
    stable.sort(key=lambda c: (c.seen_ms, c.signature[1], c.rel))
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


def take_file(src: Path, dest: Path, signature: Signature, sha256: str) -> None:
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
