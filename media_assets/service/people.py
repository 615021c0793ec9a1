"""The People verbs: list, dossier, name, merge, split and forget persons, and a face's thumbnail.

`medialens people ...`, `medialens forget person` and the results UI's People page all call these
functions, so the command line and the UI cannot drift: the same checks, the same decision log
(`plumbing/people_log.py`, append-only) and the same re-clustering (`headless.refresh_people`, a
recorded Dagster run of `person_dossiers`). A decision about a person the current dossiers do not
hold is refused before it is appended, because the log is never rewritten.

`defs` is anything with the code location's `resources` (store, models, qdrant, inference_cache):
`media_assets.definitions.defs` in the CLI, `definitions_for(paths)` where the environment may have
changed since that module was imported (the UI, tests).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from media_assets.analysis import people as persons
from media_assets.plumbing.config import Paths
from media_assets.plumbing.people_log import DOSSIERS, append_decision
from media_assets.service import forget as forgetting
from resources.store import MediaStore

THUMBNAIL_PX = 112  # what the faces step stores per face (its `thumbnail_size`)


class UnknownPerson(forgetting.NothingToForget):
    """No person with this id in the current dossiers (a `NothingToForget`, so callers of the
    forget service need no second except)."""

    def __init__(self, person_id: str) -> None:
        super().__init__(person_id)
        self.person_id = person_id

    def __str__(self) -> str:
        return f"no person {self.person_id!r} (list them with `medialens people`)"


class UnknownFace(ValueError):
    """A split names a face that is not one of the person's appearances."""

    def __init__(self, person_id: str, face_id: str) -> None:
        super().__init__(
            f"person {person_id!r} has no face {face_id!r} (its faces: `medialens people show {person_id} --json`)"
        )
        self.person_id = person_id
        self.face_id = face_id


def definitions_for(paths: Paths) -> Any:
    """Definitions holding only the resources under `paths`: enough for every verb here, and built
    now, whereas `media_assets.definitions.defs` keeps the environment of its first import."""
    from dagster import Definitions

    from resources import build_resources

    return Definitions(resources=build_resources(paths))


def _store(defs: Any) -> MediaStore:
    store: MediaStore = defs.resources["store"]
    return store


def _manifest(defs: Any, paths: Paths, refresh: bool) -> dict[str, Any] | None:
    """The dossiers' manifest, re-clustered first when `refresh` (decisions made since are applied)."""
    if refresh:
        from media_assets.service.headless import refresh_people

        return refresh_people(defs, paths)
    return _store(defs).read_manifest(DOSSIERS, "library")


def _table(store: MediaStore, manifest: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    if not manifest:
        return []
    path = manifest["tables"][name]
    return store.read_table(path).to_pylist() if Path(path).exists() else []


def _row(r: dict[str, Any]) -> dict[str, Any]:
    """One `people --json` row (docs/contract.md)."""
    return {"person_id": r["person_id"], "name": r["name"], "media": r["media"], "appearances": r["count"]}


def list_people(defs: Any, paths: Paths, *, refresh: bool = True) -> list[dict[str, Any]]:
    """The persons (`people --json`'s `persons`): person_id, name, media (keys, in order of first
    appearance), appearances (faces). `refresh=False` reads the dossiers as last clustered."""
    store = _store(defs)
    return [_row(r) for r in _table(store, _manifest(defs, paths, refresh), "persons")]


def representatives(defs: Any) -> dict[str, str]:
    """person_id -> its best face_id (score x size), for a thumbnail per person."""
    store = _store(defs)
    rows = _table(store, store.read_manifest(DOSSIERS, "library"), "persons")
    return {r["person_id"]: r["representatives"][0] for r in rows if r["representatives"]}


def unassigned_faces(defs: Any) -> dict[str, int]:
    """How many detected faces are in no person, by why: "small" or "low_score" (below the quality
    floors of `PeopleParams`: too little identity to tell who it is), "small_cluster" (below
    `min_cluster_faces`, 1 by default, so a face seen once is a person of its own) or "rejected"
    (a "not this person" decision found no one else near)."""
    store = _store(defs)
    counts: dict[str, int] = {}
    for r in _table(store, store.read_manifest(DOSSIERS, "library"), "unassigned"):
        counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    return counts


def dossiers_stamp(defs: Any) -> int:
    """Changes whenever the dossiers are re-clustered (the manifest's mtime in ns; 0 before any):
    a cache key for what is derived from them."""
    path = _store(defs).manifest_path(DOSSIERS, "library")
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _known(store: MediaStore) -> set[str]:
    return {r["person_id"] for r in _table(store, store.read_manifest(DOSSIERS, "library"), "persons")}


def require_persons(defs: Any, *ids: str) -> None:
    """Raise UnknownPerson for the first of `ids` that the current dossiers do not hold (all of
    them before any dossier run)."""
    known = _known(_store(defs))
    for i in ids:
        if i not in known:
            raise UnknownPerson(i)


def _summarizer(defs: Any) -> Any:
    """The `summary` asset's summarizer (LLM when configured and installed, else extractive)."""
    from dagster import get_dagster_logger

    from media_assets.assets.summary import summarizer

    return summarizer(defs.resources["models"], get_dagster_logger())[0]


def dossier(defs: Any, paths: Paths, person_id: str, *, refresh: bool = True) -> dict[str, Any]:
    """What `people show ID --json` prints: the person's row, its appearances (face_id, media, t,
    kf, box) and its dossier (`service/dossier.build_dossier`: per media the appearances with what
    was said, shown and flagged around them, who else is there, a summary)."""
    from media_assets.service.dossier import build_dossier

    store = _store(defs)
    manifest = _manifest(defs, paths, refresh)
    person = next((_row(r) for r in _table(store, manifest, "persons") if r["person_id"] == person_id), None)
    if person is None:
        raise UnknownPerson(person_id)
    all_apps = _table(store, manifest, "appearances")
    apps = [r for r in all_apps if r["person_id"] == person_id]
    co = _table(store, manifest, "co_appearances")
    return {**person, "appearances": apps, "dossier": build_dossier(store, person, all_apps, co, _summarizer(defs))}


def _decide(defs: Any, paths: Paths, decision: persons.Decision) -> list[dict[str, Any]]:
    append_decision(_store(defs), decision)
    return list_people(defs, paths, refresh=True)


def name_person(defs: Any, paths: Paths, person_id: str, name: str | None) -> list[dict[str, Any]]:
    """Name a person (None or "" takes the name away); returns the re-clustered persons."""
    require_persons(defs, person_id)
    return _decide(defs, paths, persons.Name(person_id, name))


def merge_people(defs: Any, paths: Paths, a: str, b: str) -> list[dict[str, Any]]:
    """Person `b` joins person `a` (a keeps its id, and its name or else b's); returns the persons."""
    require_persons(defs, a, b)
    if a == b:
        raise ValueError(f"cannot merge person {a!r} into itself")
    return _decide(defs, paths, persons.Merge(a, b))


def split_person(defs: Any, paths: Paths, person_id: str, face_id: str) -> list[dict[str, Any]]:
    """Make one face of a person a person of its own (id `split_person_id(person_id, face_id)`),
    never put back by a re-clustering; returns the persons."""
    require_persons(defs, person_id)
    store = _store(defs)
    faces = {
        r["face_id"]
        for r in _table(store, store.read_manifest(DOSSIERS, "library"), "appearances")
        if r["person_id"] == person_id
    }
    if face_id not in faces:
        raise UnknownFace(person_id, face_id)
    return _decide(defs, paths, persons.Split(person_id, face_id))


def split_person_id(person_id: str, face_id: str) -> str:
    """The id of the person that `split_person(..., person_id, face_id)` creates."""
    return persons.split_person_id(person_id, face_id)


def forget(defs: Any, paths: Paths, person_id: str) -> forgetting.Forgotten:
    """Delete a person's faces everywhere and keep them out of future clustering: what
    `medialens forget person ID` does (`service/forget.forget_person`, journalled, resumable).
    Raises UnknownPerson when neither the dossiers nor an unfinished forget know the id."""
    from media_assets.service.headless import dagster_instance, refresh_people

    res = defs.resources
    res["store"].sweep_scratch()  # half-written files of killed processes may hold its data too
    try:
        return forgetting.forget_person(
            person_id,
            dagster_instance(paths),
            res["store"],
            res["qdrant"],
            res["inference_cache"].process_config_and_initialize(),  # resolves REDIS_URL outside a run
            lambda: refresh_people(defs, paths),
        )
    except UnknownPerson:
        raise
    except forgetting.NothingToForget as exc:
        raise UnknownPerson(person_id) from exc


def face_thumbnail(store: MediaStore, face_id: str, size: int = THUMBNAIL_PX) -> bytes | None:
    """A small JPEG of one face (`MEDIA/KF/FACE`): the aligned crop the faces step stored, else a
    crop of its keyframe around the box; None when neither is there any more (forgotten, pruned)."""
    return face_thumbnails(store, [face_id], size).get(face_id)


def face_thumbnails(store: MediaStore, face_ids: Iterable[str], size: int = THUMBNAIL_PX) -> dict[str, bytes | None]:
    """`face_thumbnail` of many faces, reading each media's faces table once (a grid of persons)."""
    wanted: dict[str, dict[tuple[int, int], str]] = {}
    out: dict[str, bytes | None] = {}
    for f in face_ids:
        out[f] = None
        try:
            media, kf, face = f.rsplit("/", 2)
            wanted.setdefault(media, {})[(int(kf), int(face))] = f
        except ValueError:  # not a face id: no picture
            continue
    for media, faces in wanted.items():
        manifest = store.read_manifest("faces", media) or {}
        table = manifest.get("table")
        if not table or not Path(table).exists():
            continue
        for r in store.read_table(table).select(["kf", "face", "box", "thumbnail"]).to_pylist():
            fid = faces.get((r["kf"], r["face"]))
            if fid is None:
                continue
            thumb = r["thumbnail"]
            out[fid] = bytes(thumb) if thumb else _keyframe_crop(store, media, r["kf"], r["box"], size)
    return out


def _keyframe_crop(store: MediaStore, media: str, kf: int, box: list[float], size: int) -> bytes | None:
    """The face's box (with a margin) cut out of its keyframe image, as a JPEG at most `size` px."""
    from PIL import Image

    frames = store.read_manifest("keyframes", media) or {}
    table = frames.get("table")
    if not table or not Path(table).exists():
        return None
    path = next((r["path"] for r in store.read_table(table).to_pylist() if int(r["idx"]) == kf), None)
    if not path or not Path(path).exists():
        return None
    x0, y0, x1, y1 = box
    margin = 0.25 * max(x1 - x0, y1 - y0)
    with Image.open(path) as img:
        crop = img.convert("RGB").crop(
            (
                max(0, int(x0 - margin)),
                max(0, int(y0 - margin)),
                min(img.width, int(x1 + margin)),
                min(img.height, int(y1 + margin)),
            )
        )
    crop.thumbnail((size, size))
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=85)
    return out.getvalue()


__all__ = [
    "UnknownFace",
    "UnknownPerson",
    "definitions_for",
    "dossier",
    "dossiers_stamp",
    "face_thumbnail",
    "face_thumbnails",
    "forget",
    "list_people",
    "merge_people",
    "name_person",
    "representatives",
    "require_persons",
    "split_person",
    "split_person_id",
    "unassigned_faces",
]
