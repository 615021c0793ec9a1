"""`person_dossiers`: the faces of the whole library clustered into anonymous persons.

Unpartitioned, over every partition of `faces`: inference and clustering are separate, so a
re-cluster never re-runs a face model. The user's decisions (names, merges, splits, "not this
person", forget) live in an append-only log beside the state, are replayed after every
clustering and are never overwritten by it. Names only ever come from the user.
"""

import json
import time
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import people as persons
from media_assets.assets.faces import ASSET as FACES_ASSET
from media_assets.assets.faces import faces
from media_assets.assets.model_assets import md_table
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.people_log import load_decisions, people_dir
from resources.store import MediaStore

ASSET = "person_dossiers"
SETTINGS = current_settings()
PARAMS = persons.PeopleParams.from_params(SETTINGS.of(ASSET))
VERSION = SETTINGS.version(ASSET, persons.MODEL_ID)


def library_faces(store: MediaStore, keys: list[str]) -> list[persons.FaceRow]:
    """Every face row of every analysed media (media without a `faces` manifest have none yet)."""
    rows: list[persons.FaceRow] = []
    for key in keys:
        manifest = store.read_manifest(FACES_ASSET, key)
        if manifest and manifest.get("table"):
            rows += persons.face_rows(key, store.read_table(manifest["table"]).to_pylist())
    return rows


def build_dossiers(store: MediaStore, keys: list[str]) -> dict[str, Any]:
    """Cluster, keep ids and names, write the tables and the state; returns the manifest."""
    out = people_dir(store)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = persons.PeopleState.from_json(json.loads(state_path.read_text()) if state_path.exists() else None)
    started = time.perf_counter()
    people = persons.build_people(
        library_faces(store, keys), state, load_decisions(store), PARAMS, {k: i for i, k in enumerate(keys)}
    )
    tables = {
        "persons": persons.persons_table(people.persons),
        "appearances": persons.appearances_table(people.appearances),
        "co_appearances": persons.co_appearances_table(people.co_appearances),
        "unassigned": persons.unassigned_table(people.unassigned, people.faces),
    }
    paths = {name: str(store.write_table(ASSET, VERSION, name, t)) for name, t in tables.items()}
    store.write_bytes(state_path, json.dumps(people.state.to_json()).encode())
    manifest = {
        "version": VERSION,
        "model": persons.MODEL_ID,
        "tables": paths,
        "persons": len(people.persons),
        "appearances": len(people.appearances),
        "unassigned": len(people.unassigned),
        "seconds": round(time.perf_counter() - started, 2),
        "top": [
            [p.person_id, p.name or "", p.count, len(p.media)]
            for p in sorted(people.persons, key=lambda p: -p.count)[:15]
        ],
    }
    store.write_manifest(ASSET, "library", manifest)
    return manifest


@asset(
    deps=[faces],
    group_name="people",
    code_version=VERSION,
    kinds={"scipy", "parquet"},
    description="Person dossiers: the faces of all media clustered into anonymous persons with stable ids; "
    "the user's names, merges, splits and forgets are replayed after every clustering.",
)
def person_dossiers(context: AssetExecutionContext, store: MediaStore) -> MaterializeResult:
    keys = list(context.instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    m = build_dossiers(store, keys)
    context.log.info(f"{m['persons']} persons from {m['appearances']} faces; {m['unassigned']} unassigned")
    return MaterializeResult(
        metadata={
            "version": VERSION,
            "persons": m["persons"],
            "appearances": m["appearances"],
            "unassigned": m["unassigned"],
            "media": len(keys),
            "seconds": m["seconds"],
            "persons_table": MetadataValue.path(m["tables"]["persons"]),
            "top_persons": MetadataValue.md(md_table(["person", "name", "faces", "media"], m["top"])),
        }
    )
