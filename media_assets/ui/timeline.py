"""One media's analyses on one time axis, per keyframe (no Streamlit, so it is unit-tested alone).

`show()` keeps each analysis in its own list (faces, poses, safety labels); a reviewer wants them
side by side at each moment: who is in this frame, how many people pose, what was flagged, what the
tagger saw. Per-keyframe tags are not in `show()` (it has the media's tags), so they come in apart.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

DAGSTER_URL_ENV = "MEDIALENS_DAGSTER_URL"
DAGSTER_URL = "http://127.0.0.1:3000"  # `make dev`'s Dagster UI


def _slot(t: float) -> float:
    """The analyses copy their keyframe's t: equal up to float noise, so times meet at the ms."""
    return round(float(t), 3)


@dataclass
class KeyframeMoment:
    """What the analyses found in one keyframe."""

    t: float
    path: str
    faces: list[str] = field(default_factory=list)  # person name, else person id, else "unassigned"
    face_ids: list[str] = field(default_factory=list)  # the same faces' ids (`KEY/KF/FACE`), for thumbnails
    poses: int | None = None  # people with a pose; None when poses were not analysed
    safety: list[str] = field(default_factory=list)  # "LABEL 0.87"
    tags: list[str] = field(default_factory=list)  # "label 0.61"


def keyframe_timeline(
    obj: Mapping[str, Any],
    keyframe_tags: Iterable[Mapping[str, Any]] = (),
    names: Mapping[str, str | None] | None = None,
) -> list[KeyframeMoment]:
    """The keyframes of a `show()` object, each with its faces, poses, safety labels and tags.

    `keyframe_tags` are the `tags` asset's per-keyframe rows (t, label, score); `names` maps
    person ids to the names users gave. Media without keyframes (audio) have no timeline."""
    names = names or {}
    faces: dict[float, list[str]] = defaultdict(list)
    face_ids: dict[float, list[str]] = defaultdict(list)
    for f in obj.get("faces") or []:
        pid = f.get("person_id")
        faces[_slot(f["t"])].append((names.get(pid) or pid) if pid else "unassigned")
        face_ids[_slot(f["t"])].append(f["face_id"])
    poses = {_slot(p["t"]): len(p["persons"]) for p in obj.get("poses") or []}
    labels: dict[float, list[str]] = defaultdict(list)
    for s in (obj.get("safety") or {}).get("labels") or []:
        labels[_slot(s["t"])].append(f"{s['label']} {s['score']:.2f}")
    tags: dict[float, list[str]] = defaultdict(list)
    for r in sorted(keyframe_tags, key=lambda r: -float(r["score"])):
        tags[_slot(r["t"])].append(f"{r['label']} {r['score']:.2f}")
    analysed_poses = obj.get("poses") is not None
    out = []
    for kf in obj.get("keyframes") or []:
        t = _slot(kf["t"])
        out.append(
            KeyframeMoment(
                t=float(kf["t"]),
                path=str(kf["path"]),
                faces=faces.get(t, []),
                face_ids=face_ids.get(t, []),
                poses=poses.get(t, 0) if analysed_poses else None,
                safety=labels.get(t, []),
                tags=tags.get(t, []),
            )
        )
    return out


def dagster_url() -> str:
    """Where the Dagster UI is (MEDIALENS_DAGSTER_URL, else `make dev`'s address)."""
    return os.environ.get(DAGSTER_URL_ENV, "").rstrip("/") or DAGSTER_URL


def partition_url(asset: str, key: str, base: str | None = None) -> str:
    """The Dagster UI's page of one asset partition: its materialisations, metadata and runs."""
    return f"{base or dagster_url()}/assets/{quote(asset)}?" + urlencode({"view": "partitions", "partition": key})
