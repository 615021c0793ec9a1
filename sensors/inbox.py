"""Inbox housekeeping for the upload sensor, free of Dagster: list, wait for stable, set aside.

A file is taken only when its size and mtime did not change between two looks, so a copy still in
progress is never analysed half-written; partial-download names and dotfiles are never looked at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REJECTED_DIR = "rejected"
DUPLICATES_DIR = "duplicates"
RESERVED_DIRS = {REJECTED_DIR, DUPLICATES_DIR}
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")

Signature = tuple[int, int]  # (size, mtime_ns)


@dataclass(frozen=True)
class Candidate:
    """A file in the inbox, with its signature at this look."""

    path: Path
    rel: str
    signature: Signature


def is_ignored_name(name: str) -> bool:
    """Dotfiles and names of files still being written (browsers, rsync, editors)."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


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
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed while we looked
                continue
            found.append(Candidate(path, path.relative_to(root).as_posix(), (st.st_size, st.st_mtime_ns)))
    found.sort(key=lambda c: (c.signature[1], c.rel))
    yield from found


def split_stable(
    candidates: list[Candidate], previous: Mapping[str, list[int]]
) -> tuple[list[Candidate], dict[str, list[int]]]:
    """Files unchanged since the last look are stable; the rest are remembered for the next look."""
    stable: list[Candidate] = []
    pending: dict[str, list[int]] = {}
    for c in candidates:
        if tuple(previous.get(c.rel, ())) == c.signature:
            stable.append(c)
        else:
            pending[c.rel] = list(c.signature)
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


def _free_name(folder: Path, name: str) -> Path:
    dest = folder / name
    n = 2
    while dest.exists() or dest.is_symlink():
        stem, dot, ext = name.partition(".")
        dest = folder / f"{stem} ({n}){dot}{ext}"
        n += 1
    return dest


def set_aside(path: Path, root: Path, folder: str, reason: str) -> Path:
    """Move a refused or duplicate file into `<inbox>/<folder>/` with `<name>.reason.txt` beside it."""
    target_dir = root / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    dest = _free_name(target_dir, path.name)
    os.replace(path, dest)  # a symlink is moved as a link, never followed
    (dest.parent / f"{dest.name}.reason.txt").write_text(reason.rstrip() + "\n", encoding="utf-8")
    return dest
