"""The person dossiers' durable files: the user's decision log and the clustering state.

Kept apart from the `person_dossiers` asset so the `faces` asset, `forget` and `show` can read them
without importing the asset graph.
"""

from __future__ import annotations

import json
from pathlib import Path

from media_assets.analysis import people as persons
from media_assets.plumbing.append_log import AppendLog
from resources.store import MediaStore

DOSSIERS = "person_dossiers"


def people_dir(store: MediaStore) -> Path:
    return store.path / DOSSIERS


def decisions_path(store: MediaStore) -> Path:
    return people_dir(store) / "decisions.jsonl"


def _log(store: MediaStore) -> AppendLog[persons.Decision]:
    return AppendLog(
        store.path, decisions_path(store), persons.decision_from_json, item="decision", what="a person decision"
    )


def load_decisions(store: MediaStore) -> list[persons.Decision]:
    """The user's decisions, oldest first (one JSON object per line).

    A process killed in the middle of `append_decision` can leave the last line cut short, without
    its newline: that decision was never confirmed to anyone, so it is skipped with a warning (the
    next append cuts it off). A bad line anywhere else is damage, and an error naming the line."""
    return _log(store).read()


def append_decision(store: MediaStore, decision: persons.Decision) -> None:
    """Record one decision durably: appended and fsynced before the dossiers are rebuilt.

    A torn last line left by a killed append is cut off first, so the new decision starts a line
    of its own; a full disk leaves the log as it was and raises StoreFull. Appends from two
    processes (two `people` commands) are serialised by a lock on the log (plumbing/append_log.py)."""
    _log(store).append(persons.decision_to_json(decision))


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


def _write_state(store: MediaStore, state: dict) -> None:
    store.write_bytes(people_dir(store) / "state.json", json.dumps(state).encode())


def remember_forgotten_digests(store: MediaStore, digests: set[str]) -> None:
    """Add embedding digests of forgotten faces to the clustering state (non-invertible: they only
    recognise the very same embedding, e.g. the same picture uploaded again)."""
    path = people_dir(store) / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state["forgotten_digests"] = sorted(set(state.get("forgotten_digests", [])) | digests)
    _write_state(store, state)


def scrub_media(store: MediaStore, key: str) -> int:
    """Drop the user's decisions about faces of a forgotten media (they name its face ids); the
    rest of the log stays as it was. Returns how many decisions changed."""
    prefix = key + "/"
    changed = 0
    kept: list[persons.Decision] = []
    for d in load_decisions(store):
        if isinstance(d, persons.Split | persons.NotThisPerson) and d.face_id.startswith(prefix):
            changed += 1
            continue
        if isinstance(d, persons.ForgetPerson) and any(f.startswith(prefix) for f in d.face_ids):
            d = persons.ForgetPerson(d.person_id, tuple(f for f in d.face_ids if not f.startswith(prefix)))
            changed += 1
        if isinstance(d, persons.ForgetMedia) and d.media_key == key:
            changed += 1
            continue
        kept.append(d)
    if changed:
        rewrite_decisions(store, kept)
    state_path = people_dir(store) / "state.json"
    if state_path.exists():
        state = json.loads(state_path.read_text())
        state["forgotten_face_ids"] = [f for f in state.get("forgotten_face_ids", []) if not f.startswith(prefix)]
        # a cluster left without faces goes, centroid and all: it must not lend its id to a look-alike
        clusters = [
            {**c, "face_ids": [f for f in c.get("face_ids", []) if not f.startswith(prefix)]}
            for c in state.get("clusters", [])
        ]
        state["clusters"] = [c for c in clusters if c["face_ids"]]
        _write_state(store, state)
    return changed


def rewrite_decisions(store: MediaStore, decisions: list[persons.Decision]) -> None:
    """Replace the whole log atomically (used only to remove what the user asked to forget)."""
    _log(store).rewrite(persons.decision_to_json(d) for d in decisions)


def drop_names(store: MediaStore, person_id: str) -> int:
    """Remove the names given to a forgotten person (or to anyone merged with it) from the log:
    a name is the most personal thing the log holds."""
    decisions = load_decisions(store)
    group = {person_id}
    grew = True
    while grew:  # merges chain: a+b, b+c
        grew = False
        for d in decisions:
            if isinstance(d, persons.Merge) and (d.a in group) != (d.b in group):
                group |= {d.a, d.b}
                grew = True
    kept = [d for d in decisions if not (isinstance(d, persons.Name) and d.person_id in group)]
    if len(kept) < len(decisions):
        rewrite_decisions(store, kept)
    return len(decisions) - len(kept)
