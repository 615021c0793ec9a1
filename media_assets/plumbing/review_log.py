"""The safety review decision log: what a person decided about a media's safety verdict.

`<store>/safety_review/decisions.jsonl`, append-only like the person decisions (plumbing/append_log.py:
locked, fsynced appends; a torn last line skipped). One record per decision:
`{key, decision: "approve" | "reject" | "note", note, at (ISO 8601, UTC), verdict, safety_version}`,
where `verdict` and `safety_version` are what the reviewer saw. Nothing here runs a model: a
decision is matched against the verdict the `safety` asset holds now (`applicable`).

Which decision applies to a media whose verdict is V now:
- its latest approve/reject, if that was made on V: the media is decided (out of the review queue),
  however often it was re-analysed since with the same verdict. A decision made on another verdict
  no longer applies: the media is back in the queue, undecided, until someone decides on V.
- `note` records a remark without deciding: a media without an applying approve/reject stays in the
  queue, showing the latest note (decision "note"). The `note` shown is the latest remark (of a
  note, or given with an approve/reject) made on V since the last record made on another verdict,
  so a note written before approving still explains the approval.

Kept in plumbing so `show` (and `forget`) can read it without importing the review service.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_assets.plumbing.append_log import AppendLog
from resources.store import MediaStore

REVIEW_DIR = "safety_review"
DECISIONS = ("approve", "reject", "note")
VERDICTS = ("safe", "review", "unsafe")
# Media keys are `[A-Za-z0-9_-]` (see `forget`); nothing else can name one.
KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class ReviewDecision:
    """One line of the log: a person's decision (or note) about `key`'s verdict as they saw it."""

    key: str
    decision: str  # "approve" | "reject" | "note"
    note: str | None
    at: str  # ISO 8601 in UTC, e.g. 2025-01-31T09:12:44+00:00
    verdict: str  # the verdict the reviewer saw: "review" | "unsafe" (| "safe")
    safety_version: str | None  # the `safety` result version the reviewer saw

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    """The `at` of a decision made now: ISO 8601, UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def from_json(obj: Any) -> ReviewDecision:
    """A log line's object as a decision; ValueError/KeyError/TypeError when it is not one."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    d = ReviewDecision(
        key=obj["key"],
        decision=obj["decision"],
        note=obj.get("note"),
        at=obj["at"],
        verdict=obj["verdict"],
        safety_version=obj.get("safety_version"),
    )
    if not isinstance(d.key, str) or not KEY.match(d.key):
        raise ValueError(f"key {d.key!r} is not a media key")
    if d.decision not in DECISIONS:
        raise ValueError(f"decision {d.decision!r} is not one of {', '.join(DECISIONS)}")
    if d.verdict not in VERDICTS:
        raise ValueError(f"verdict {d.verdict!r} is not one of {', '.join(VERDICTS)}")
    if not isinstance(d.at, str) or not (d.note is None or isinstance(d.note, str)):
        raise TypeError("at must be a string and note a string or null")
    if d.safety_version is not None and not isinstance(d.safety_version, str):
        raise TypeError("safety_version must be a string or null")
    return d


def decisions_path(store: MediaStore) -> Path:
    return store.path / REVIEW_DIR / "decisions.jsonl"


def _log(store: MediaStore) -> AppendLog[ReviewDecision]:
    return AppendLog(store.path, decisions_path(store), from_json, item="review decision", what="a review decision")


def load(store: MediaStore) -> list[ReviewDecision]:
    """Every review decision, oldest first (a torn last line is skipped with a warning)."""
    return _log(store).read()


def append(store: MediaStore, decision: ReviewDecision) -> None:
    """Record one decision durably (fsynced before this returns; StoreFull on a full disk)."""
    _log(store).append(decision.as_dict())


def scrub_media(store: MediaStore, key: str) -> int:
    """Remove every decision about a forgotten media (atomic rewrite; repeating it is harmless).
    Returns how many were removed."""
    return _log(store).rewrite_without(lambda d: d.key == key)


def applicable(records: list[ReviewDecision], key: str, verdict: str | None) -> dict[str, Any] | None:
    """`{decision, at, note}` of what applies to `key` with its current `verdict` (see the module
    docstring), or None: no decision, only decisions made on another verdict, or no verdict at all."""
    if verdict is None:
        return None
    mine = [d for d in records if d.key == key]
    last = next((d for d in reversed(mine) if d.decision != "note"), None)
    # notes count from the last record made on another verdict: those were about something else
    since = max((i for i, d in enumerate(mine) if d.verdict != verdict), default=-1) + 1
    notes = [d for d in mine[since:] if d.note]
    note = notes[-1].note if notes else None
    if last is not None and last.verdict == verdict:
        return {"decision": last.decision, "at": last.at, "note": note}
    if notes:
        return {"decision": "note", "at": notes[-1].at, "note": note}
    return None


def review_of(store: MediaStore, key: str, verdict: str | None) -> dict[str, Any] | None:
    """What applies to `key` whose safety verdict is `verdict` now (`applicable` over the log)."""
    return applicable(load(store), key, verdict) if verdict is not None else None
