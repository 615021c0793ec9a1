"""A durable, append-only JSON Lines log: the store's way of keeping what users decided.

The person decisions (`people_log`) and the safety review decisions (`review_log`) are the user's own
work: they cannot be recomputed from the media, so they must survive a killed process, a power cut
and a full disk. One JSON object per line; each append is one locked, fsynced write at the end.

- A process killed in the middle of an append can leave the last line cut short, without its
  newline. That record was never confirmed to anyone: readers skip it with a warning, and the next
  append cuts it off first. A bad line anywhere else is damage, and an error naming the line.
- Appends from several processes are serialised by an exclusive `flock` on the log file.
- A full disk leaves the log as it was and raises StoreFull.
- Rewrites (only to remove what a user asked to forget) replace the file atomically while holding
  the lock; an append that waited on the lock of the replaced file notices and appends to the new one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from resources import atomic
from resources.atomic import is_no_space, store_full

T = TypeVar("T")

log = logging.getLogger(__name__)

_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


def encode(obj: Any) -> bytes:
    """One log line: the object as sorted-key JSON, newline-terminated."""
    return (json.dumps(obj, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class AppendLog(Generic[T]):
    """One append-only log file in the store.

    `parse` turns one line's JSON value into a record and raises ValueError, KeyError, TypeError or
    AttributeError when the value is not a valid record; `item` names a record in errors ("line 3
    is not a valid <item>") and `what` names one in StoreFull messages ("(<what>) needs N bytes")."""

    root: Path  # the store root: StoreFull measures the free space there
    path: Path
    parse: Callable[[Any], T]
    item: str = "record"
    what: str = "a log record"

    # -- reading ---------------------------------------------------------------------------------
    def read(self) -> list[T]:
        """Every record, oldest first; a torn last line is skipped with a warning."""
        return [record for record, _raw in self._entries()]

    def _entries(self) -> list[tuple[T, bytes]]:
        """(record, its line's bytes without the newline) for every readable line."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        tail = lines.pop()  # what follows the last newline: empty unless the last write was cut short
        entries = [(self._parse(n, raw), raw) for n, raw in enumerate(lines, 1) if raw.strip()]
        if tail.strip():
            try:
                entries.append((self._parse(len(lines) + 1, tail), tail))
            except ValueError as exc:
                log.warning("ignoring the torn last line of %s (a write cut short): %s", self.path, exc)
        return entries

    def _parse(self, line_no: int, raw: bytes) -> T:
        try:
            return self.parse(json.loads(raw.decode("utf-8")))
        except _PARSE_ERRORS as exc:
            raise ValueError(f"{self.path}: line {line_no} is not a valid {self.item}: {exc}") from exc

    # -- appending -------------------------------------------------------------------------------
    def append(self, obj: Any) -> None:
        """Record one JSON object durably: appended and fsynced before this returns.

        The object must parse as a record (it is checked first, so the log never holds a line its
        readers would refuse). A torn last line left by a killed append is cut off first, so the new
        record starts a line of its own; a full disk leaves the log as it was and raises StoreFull."""
        line = encode(obj)
        try:
            self.parse(json.loads(line))
        except _PARSE_ERRORS as exc:
            raise ValueError(f"{self.path}: refusing to append an invalid {self.item}: {exc}") from exc
        with self._locked(len(line)) as fd:
            end = os.fstat(fd).st_size
            try:
                end = self._repair_tail(fd, end)
                _write_at(fd, line, end)
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, end)
                if is_no_space(exc):
                    raise store_full(self.root, self.path, len(line), self.what) from exc
                raise

    @contextmanager
    def _locked(self, needed: int) -> Iterator[int]:
        """A descriptor of the log file as it is now, exclusively locked. A rewrite replaces the
        file while holding the lock of the old one: whoever waited on that lock opens the new file."""
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if is_no_space(exc):
                    raise store_full(self.root, self.path, needed, self.what) from exc
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass  # replaced or removed while we waited: open it again
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _repair_tail(self, fd: int, size: int) -> int:
        """Make the log end with a newline; returns its new size. A cut-short last line is removed;
        a complete one that lost only its newline gets it back (it was readable, so it counts)."""
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        start, tail = size, b""
        while start > 0:  # back to the newline before the torn line (logs are small; blocks anyway)
            step = min(4096, start)
            start -= step
            tail = os.pread(fd, step, start) + tail
            cut = tail.rfind(b"\n")
            if cut >= 0:
                start, tail = start + cut + 1, tail[cut + 1 :]
                break
        try:
            self._parse(0, tail)
        except ValueError:
            log.warning("cutting off the torn last line of %s (a write cut short): %r", self.path, tail[:200])
            os.ftruncate(fd, start)
            return start
        _write_at(fd, b"\n", size)
        return size + 1

    # -- rewriting (forgetting) ------------------------------------------------------------------
    def rewrite(self, objs: Iterable[Any]) -> None:
        """Replace the whole log with `objs`, atomically and under the lock (only to remove what a
        user asked to forget: the log is otherwise append-only)."""
        data = b"".join(encode(o) for o in objs)
        with self._locked(len(data)):
            atomic.write_bytes(self.root, self.path, data, self.what)

    def rewrite_without(self, drop: Callable[[T], bool]) -> int:
        """Remove every record `drop` is true of, atomically and under the lock; the other lines stay
        byte for byte. A torn last line goes too (never confirmed, and it may name what is being
        forgotten). Returns how many records were removed; the file is untouched when none was and
        nothing was torn. Safe to repeat: a second call finds nothing left to remove."""
        if not self.path.exists():
            return 0
        with self._locked(0):
            size = self.path.stat().st_size
            entries = self._entries()
            kept = [raw for record, raw in entries if not drop(record)]
            whole = sum(len(raw) + 1 for _record, raw in entries)  # what the file holds without a torn tail
            if len(kept) == len(entries) and whole == size:
                return 0
            atomic.write_bytes(self.root, self.path, b"".join(raw + b"\n" for raw in kept), self.what)
            return len(entries) - len(kept)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
