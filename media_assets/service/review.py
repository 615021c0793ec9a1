"""The safety review queue: media whose verdict calls for a person, and what that person decided.

The `safety` asset's verdict ("review" / "unsafe") is an aid, never a finding (see
media_assets/analysis/safety.py); this is where a person looks at the flagged keyframes and
approves, rejects or leaves a note. Decisions go to an append-only log (plumbing/review_log.py,
which also states which decision applies); nothing here runs a model or changes an analysis.

- `queue`: media with verdict review/unsafe that no applying approve/reject covers (a media with
  only a note stays, showing it).
- `decide`: record approve/reject/note; refused for unknown media, media without a safety result
  (not analysed yet, or audio only), media whose verdict is "safe", and unknown decisions.
- `review_of`: the decision that applies now (`show --json`'s `safety.review`).
A decision holds across re-analysis while the verdict stays the same; a different verdict puts
the media back in the queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from media_assets.plumbing import review_log
from media_assets.plumbing.review_log import DECISIONS, KEY, ReviewDecision
from media_assets.service.show import UnknownMedia
from resources.store import MediaStore

FLAGGED = ("review", "unsafe")
_FACES = {"FACE_FEMALE", "FACE_MALE"}


class NotReviewable(ValueError):
    """The media exists but there is nothing to review: no safety result, or a "safe" verdict."""


class BadDecision(ValueError):
    """Not approve/reject/note, or a note without text."""


def _safety(store: MediaStore, key: str) -> dict[str, Any] | None:
    """The media's safety manifest, or None when it has no safety result to review (none yet, or
    an audio-only media: `show` has no visual analyses for those either)."""
    manifest = store.read_manifest("safety", key)
    if not manifest or not manifest.get("verdict"):
        return None
    frames = store.read_manifest("keyframes", key)
    if not frames or frames.get("kind") == "audio":
        return None
    return manifest


def _known(store: MediaStore, key: str) -> None:
    if not KEY.match(key) or not (store.manifest_path("media_file", key).exists() or store.source_path(key).exists()):
        raise UnknownMedia(key)


def _source_name(store: MediaStore, key: str) -> str:
    media = store.read_manifest("media_file", key) or {}
    if not media.get("source_name") and store.source_path(key).exists():
        media = store.read_source(key)
    return str(media.get("source_name") or key)


def _flagged_keyframes(store: MediaStore, key: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyframes a reviewer should see: those holding a label other than a face, and those in a
    restraint cue's time span; each with its labels (faces included: they are context)."""
    table = manifest.get("table")
    labels = store.read_table(table).to_pylist() if table and Path(table).exists() else []
    frames = store.read_manifest("keyframes", key) or {}
    rows = (
        store.read_table(frames["table"]).select(["idx", "t", "path"]).to_pylist()
        if frames.get("table") and Path(frames["table"]).exists()
        else []
    )
    by_idx = {int(r["idx"]): r for r in rows}
    per_kf: dict[int, list[dict[str, Any]]] = {}
    for r in labels:
        per_kf.setdefault(int(r["kf"]), []).append(
            {"label": r["label"], "score": round(float(r["score"]), 3), "box": r["box"]}
        )
    cues = manifest.get("restraint_cues") or []
    wanted = {kf for kf, labs in per_kf.items() if any(lb["label"] not in _FACES for lb in labs)}
    for idx, r in by_idx.items():
        if any(c["start_t"] <= r["t"] <= c["end_t"] for c in cues):
            wanted.add(idx)
    out = []
    for kf in sorted(wanted, key=lambda i: (by_idx[i]["t"] if i in by_idx else 0.0, i)):
        frame = by_idx.get(kf)
        t = float(frame["t"]) if frame else next((float(r["t"]) for r in labels if int(r["kf"]) == kf), 0.0)
        labs = sorted(per_kf.get(kf, []), key=lambda lb: -lb["score"])
        out.append({"kf": kf, "t": t, "path": frame["path"] if frame else None, "labels": labs})
    return out


def queue(store: MediaStore) -> list[dict[str, Any]]:
    """Media waiting for a person: verdict review/unsafe and no approve/reject made on that verdict.

    Each item: `{key, source_name, verdict, reasons, restraint_cues, safety_version, keyframes: [{kf,
    t, path, labels: [{label, score, box}]}], review}` where `review` is null or the latest note
    (`{"decision": "note", at, note}`). Unsafe first, then by name."""
    records = review_log.load(store)
    items = []
    for key in store.manifest_keys("safety"):
        manifest = _safety(store, key)
        if manifest is None or manifest["verdict"] not in FLAGGED:
            continue
        review = review_log.applicable(records, key, manifest["verdict"])
        if review is not None and review["decision"] != "note":
            continue
        items.append(
            {
                "key": key,
                "source_name": _source_name(store, key),
                "verdict": manifest["verdict"],
                "reasons": list(manifest.get("reasons") or []),
                "restraint_cues": list(manifest.get("restraint_cues") or []),
                "safety_version": manifest.get("version"),
                "keyframes": _flagged_keyframes(store, key, manifest),
                "review": review,
            }
        )
    return sorted(items, key=lambda i: (i["verdict"] != "unsafe", i["source_name"].lower(), i["key"]))


def review_of(store: MediaStore, key: str) -> dict[str, Any] | None:
    """`{decision, at, note}` that applies to `key` now, or None (see plumbing/review_log.py)."""
    manifest = _safety(store, key)
    return review_log.review_of(store, key, manifest["verdict"] if manifest else None)


def decide(store: MediaStore, key: str, decision: str, note: str | None = None) -> dict[str, Any]:
    """Record a person's `decision` ("approve" | "reject" | "note") on `key`'s current verdict.

    Returns `{"recorded": the log record, "review": what applies now}`. Raises UnknownMedia,
    NotReviewable (no safety result, a "safe" verdict, or a forget of it in progress) or BadDecision;
    nothing is written then."""
    if decision not in DECISIONS:
        raise BadDecision(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    text = (note or "").strip() or None
    if decision == "note" and text is None:
        raise BadDecision("a note needs its text (--note TEXT)")
    _known(store, key)
    if (store.path / "forget" / f"media-{key}.json").exists():  # forget.journal_path: it is being deleted
        raise NotReviewable(f"media {key} is being forgotten (finish it with `medialens forget media {key}`)")
    manifest = _safety(store, key)
    if manifest is None:
        raise NotReviewable(
            f"media {key} has no safety result to review (not analysed yet, or audio only: see `medialens show {key}`)"
        )
    if manifest["verdict"] not in FLAGGED:
        raise NotReviewable(f"media {key}'s safety verdict is {manifest['verdict']!r}: nothing to review")
    record = ReviewDecision(
        key=key,
        decision=decision,
        note=text,
        at=review_log.now(),
        verdict=manifest["verdict"],
        safety_version=manifest.get("version"),
    )
    review_log.append(store, record)
    return {"recorded": record.as_dict(), "review": review_of(store, key)}


def decided(store: MediaStore, limit: int = 20) -> list[dict[str, Any]]:
    """The latest approve/reject decisions that still apply, newest first: `{key, source_name,
    verdict, decision, at, note}` (for the UI's "decided" list)."""
    records = review_log.load(store)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in reversed(records):
        if d.key in seen or d.decision == "note":
            continue
        seen.add(d.key)
        manifest = _safety(store, d.key)
        if manifest is None:
            continue
        review = review_log.applicable(records, d.key, manifest["verdict"])
        if review is None or review["decision"] == "note":
            continue
        out.append({"key": d.key, "source_name": _source_name(store, d.key), "verdict": manifest["verdict"], **review})
        if len(out) >= limit:
            break
    return out
