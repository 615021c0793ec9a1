"""The person dossiers' durable files: the user's decision log and the clustering state.

Kept apart from the `person_dossiers` asset so the `faces` asset, `forget` and `show` can read them
without importing the asset graph.
"""

from __future__ import annotations

import json
from pathlib import Path

from media_assets.analysis import people as persons
from resources.store import MediaStore

DOSSIERS = "person_dossiers"


def people_dir(store: MediaStore) -> Path:
    return store.path / DOSSIERS


def load_decisions(store: MediaStore) -> list[persons.Decision]:
    """The user's decisions, oldest first (one JSON object per line)."""
    path = people_dir(store) / "decisions.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [persons.decision_from_json(json.loads(line)) for line in lines if line.strip()]


def append_decision(store: MediaStore, decision: persons.Decision) -> None:
    """Record one decision durably (appended and flushed before the dossiers are rebuilt)."""
    path = people_dir(store) / "decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(persons.decision_to_json(decision), sort_keys=True) + "\n")
        fh.flush()


def forgotten_faces(store: MediaStore) -> tuple[set[str], set[str]]:
    """Face ids and embedding digests the user asked to forget: they never come back, not even
    when a media is analysed again."""
    ids: set[str] = set()
    digests: set[str] = set()
    state = people_dir(store) / "state.json"
    if state.exists():
        obj = json.loads(state.read_text())
        ids.update(obj.get("forgotten_face_ids", ()))
        digests.update(obj.get("forgotten_digests", ()))
    for d in load_decisions(store):
        if isinstance(d, persons.ForgetPerson):
            ids.update(d.face_ids)
    return ids, digests


def person_of_faces(store: MediaStore) -> dict[str, str]:
    """face_id -> person_id from the latest dossiers (empty before the first clustering)."""
    manifest = store.read_manifest(DOSSIERS, "library")
    if not manifest:
        return {}
    rows = store.read_table(manifest["tables"]["appearances"]).select(["face_id", "person_id"]).to_pylist()
    return {r["face_id"]: r["person_id"] for r in rows}
