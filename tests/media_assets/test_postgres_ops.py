"""`medialens health`, `backup` and `restore` on a Dagster instance stored in Postgres (deploy/).

A real Postgres server (tests/postgres_server.py) and the real CLI (subprocesses). Each DAGSTER_HOME
holds deploy/dagster.yaml as it ships (run, event log and schedule storage on Postgres, connection from
DAGSTER_PG_*), only its port set to the test server's. One image is analysed into database A; health
says the instance is Postgres and reachable; `backup` takes a pg_dump; `restore` into a new, empty
home whose dagster.yaml names a new, empty database B puts the library there: show, stale and people
equal the original's, and no row of B names the old home. A third home pointed at B (now full) is
refused. With the server stopped, health fails the instance check with the reason, exit 1.

Staleness and backfills on Postgres (issue 14): after a settings change `stale` lists exactly OCR and
what reads it, `reanalyse --wait` runs a backfill under a daemon it starts, and the event log table
then holds one more materialisation of exactly those assets, none of their upstream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_SETTINGS
from tests.postgres_server import PostgresServer, postgres_or_skip

ROOT = Path(__file__).resolve().parents[2]
MEDIALENS = Path(sys.executable).parent / "medialens"
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
PASSWORD = "p@ss w/rd:%"  # trust authentication accepts any: it checks the URL quoting of backup/restore


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600)


def _json(env: dict[str, str], *args: str) -> Any:
    p = ml(env, *args, "--json")
    assert p.returncode == 0, f"medialens {' '.join(args)}: rc {p.returncode}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    server = postgres_or_skip()
    try:
        yield server
    finally:
        server.remove()


def _home(base: Path, server: PostgresServer, db: str, config_file: bool = True) -> dict[str, str]:
    """A MEDIALENS_HOME with the test settings and a DAGSTER_HOME holding deploy/dagster.yaml (an
    empty DAGSTER_HOME when not `config_file`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(
        MEDIALENS_HOME=str(base / "home"),
        DAGSTER_HOME=str(base / "dagster_home"),
        DAGSTER_PG_HOST="127.0.0.1",
        DAGSTER_PG_USER="postgres",
        DAGSTER_PG_PASSWORD=PASSWORD,
        DAGSTER_PG_DB=db,
        DAGSTER_EVENT_BATCH_SIZE="1000",  # as deploy/README.md says
    )
    (base / "home").mkdir(parents=True)
    (base / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_db"]["db_name"] == {"env": "DAGSTER_PG_DB"}
    config["storage"]["postgres"]["postgres_db"]["port"] = server.port
    (base / "dagster_home").mkdir()
    if config_file:
        (base / "dagster_home" / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return env


def _view(env: dict[str, str], key: str) -> dict[str, Any]:
    view = {"show": _json(env, "show", key), "stale": _json(env, "stale"), "people": _json(env, "people")}
    text = json.dumps(view, sort_keys=True)
    for var, name in (("MEDIALENS_HOME", "<home>"), ("DAGSTER_HOME", "<dagster_home>")):
        text = text.replace(env[var] + "/", name + "/")
    return dict(json.loads(text))


def _instance_check(doc: dict[str, Any]) -> dict[str, str]:
    (check,) = [c for c in doc["checks"] if c["name"] == "dagster instance"]
    return dict(check)


@pytest.mark.slow
def test_health_backup_restore_on_postgres(pg: PostgresServer, samples: dict[str, Path], tmp_path: Path) -> None:
    timings: dict[str, float] = {}

    def timed(label: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        p = ml(env, *args)
        timings[label] = round(time.monotonic() - started, 1)
        return p

    pg.create_db("library_a")
    a = _home(tmp_path / "a", pg, "library_a")
    p = timed("analyse", "analyse", str(samples["astronaut.png"]), "--json", env=a)
    assert p.returncode == 0, p.stderr[-3000:]
    (result,) = json.loads(p.stdout)["results"]
    assert result["status"] == "ok", result
    key = result["key"]
    assert "runs" in pg.tables("library_a") and "event_logs" in pg.tables("library_a")
    assert not (Path(a["DAGSTER_HOME"]) / "history").exists()  # nothing went to sqlite
    before = _view(a, key)
    assert before["show"]["faces"] and before["stale"]["stale"] == []

    p = timed("health", "health", "--json", env=a)
    health = json.loads(p.stdout)
    check = _instance_check(health)
    assert check["status"] == "ok" and "postgres" in check["reason"], check
    assert p.returncode == 0 and health["ok"], health

    # backup: pg_dump of database A beside the store and Qdrant
    backup_dir = tmp_path / "backup"
    p = timed("backup", "backup", str(backup_dir), "--json", env=a)
    assert p.returncode == 0, p.stderr[-3000:]
    latest = json.loads((backup_dir / "latest.json").read_text())["snapshot"]
    snapshot = json.loads((backup_dir / "snapshots" / latest).read_text())
    paths = {e["path"] for e in snapshot["files"]}
    assert snapshot["instance"] == "postgres" and "postgres/dagster.pgdump" in paths, sorted(paths)[:20]
    assert not any(p.endswith(".db") for p in paths)
    assert snapshot["left_out"] == []  # every manifest backed by the dump's materialisations

    # restore into a new home whose dagster.yaml names a new, empty database B on the same server
    pg.create_db("library_b")
    b = _home(tmp_path / "b", pg, "library_b")
    p = timed("restore", "restore", str(backup_dir), "--json", env=b)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["verified"] is True
    assert "runs" in pg.tables("library_b")
    assert pg.tables("library_a") == pg.tables("library_b")
    after = _view(b, key)
    assert after == before
    # the old home's paths are nowhere in database B (rewritten, as in a sqlite instance's files)
    count = "SELECT count(*) FROM event_logs WHERE event LIKE '%{}/%'"
    assert int(pg.psql(count.format(a["MEDIALENS_HOME"]), db="library_a").stdout) > 0
    assert int(pg.psql(count.format(b["MEDIALENS_HOME"]), db="library_b").stdout) > 0
    for old in (a["MEDIALENS_HOME"], a["DAGSTER_HOME"]):
        hits = pg.psql(f"SELECT count(*) FROM event_logs WHERE event LIKE '%{old}/%'", db="library_b").stdout
        assert hits.strip() == "0", (old, hits)
        runs = pg.psql(f"SELECT count(*) FROM runs WHERE run_body LIKE '%{old}/%'", db="library_b").stdout
        assert runs.strip() == "0", (old, runs)
    # the original library is untouched by the restore
    assert _view(a, key) == before

    # a DAGSTER_HOME without a dagster.yaml: the backed-up one is restored, its DAGSTER_PG_DB from here
    pg.create_db("library_d")
    d = _home(tmp_path / "d", pg, "library_d", config_file=False)
    p = timed("restore, backed-up dagster.yaml", "restore", str(backup_dir), "--json", env=d)
    assert p.returncode == 0, p.stderr[-3000:]
    restored_yaml = (Path(d["DAGSTER_HOME"]) / "dagster.yaml").read_text()
    assert restored_yaml == (Path(a["DAGSTER_HOME"]) / "dagster.yaml").read_text()
    assert _view(d, key) == before

    # the consistency check reads the instance as the dump holds it: a manifest whose version no
    # materialisation recorded is left out of the snapshot (as for sqlite)
    manifest = Path(a["MEDIALENS_HOME"]) / "store" / "manifests" / "tags" / f"{key}.json"
    original = manifest.read_bytes()
    manifest.write_text(json.dumps({**json.loads(original), "version": "never-recorded"}))
    try:
        p = timed("backup, a manifest ahead", "backup", str(tmp_path / "backup2"), "--json", env=a)
    finally:
        manifest.write_bytes(original)
    assert p.returncode == 0, p.stderr[-3000:]
    latest = json.loads((tmp_path / "backup2" / "latest.json").read_text())["snapshot"]
    second = json.loads((tmp_path / "backup2" / "snapshots" / latest).read_text())
    assert f"store/manifests/tags/{key}.json" not in {e["path"] for e in second["files"]}
    assert [line for line in second["left_out"] if "never-recorded" in line], second["left_out"]

    # a home whose database already holds an instance is refused, and nothing is written into it
    c = _home(tmp_path / "c", pg, "library_b")
    runs_b = pg.psql("SELECT count(*) FROM runs", db="library_b").stdout
    p = timed("restore refused", "restore", str(backup_dir), "--json", env=c)
    assert p.returncode == 2 and "already holds" in p.stderr and p.stdout == "", (p.returncode, p.stderr[-2000:])
    assert pg.psql("SELECT count(*) FROM runs", db="library_b").stdout == runs_b

    # Postgres gone: the instance check fails with the reason, exit 1
    pg.stop()
    p = timed("health, server stopped", "health", "--json", env={**a, "MEDIALENS_HEALTH_TIMEOUT_S": "30"})
    assert p.returncode == 1, (p.stdout, p.stderr[-2000:])
    check = _instance_check(json.loads(p.stdout))
    assert check["status"] == "fail" and "postgres" in check["reason"], check
    assert "refused" in check["reason"].lower() or "could not connect" in check["reason"].lower(), check
    print("timings (s):", timings, "| instance check with the server stopped:", check["reason"][:300])


def _materialisations(pg: PostgresServer, db: str, asset: str) -> dict[str, int]:
    """Materialisations of `asset` per partition, read from Postgres' own event log table."""
    rows = pg.psql(
        "SELECT partition, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        f"AND asset_key = '[\"{asset}\"]' GROUP BY partition ORDER BY partition",
        db=db,
    ).stdout
    return {p: int(n) for p, n in (line.rsplit("|", 1) for line in rows.splitlines() if line.strip())}


@pytest.mark.slow
def test_stale_and_reanalyse_on_postgres(pg: PostgresServer, samples: dict[str, Path], tmp_path: Path) -> None:
    """The staleness queries and a `reanalyse --wait` backfill under the daemon, with batched event
    writes (DAGSTER_EVENT_BATCH_SIZE), on Postgres: only what a settings change made stale runs again,
    once, and nothing is left stale."""
    pg.create_db("library_s")
    env = _home(tmp_path / "s", pg, "library_s")
    files = [str(samples["astronaut.png"]), str(samples["messi5.jpg"])]
    p = ml(env, "analyse", *files, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    keys = sorted(r["key"] for r in json.loads(p.stdout)["results"])
    assert _json(env, "stale")["stale"] == []
    ocr_before = _materialisations(pg, "library_s", "ocr_text")
    keyframes_before = _materialisations(pg, "library_s", "keyframes")
    assert ocr_before == keyframes_before == dict.fromkeys(keys, 1)

    config = Path(env["MEDIALENS_HOME"]) / "medialens.yaml"
    config.write_text(config.read_text() + "ocr_text: {det_limit_side_len: 640}\n")
    stale = _json(env, "stale")["stale"]
    assert {(s["asset"], s["partition"]) for s in stale} == {
        (asset, key) for asset in ("ocr_text", "summary", "search_index") for key in keys
    }  # OCR and what reads it

    r = ml(env, "reanalyse", "--asset", "ocr_text", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["status"] == "COMPLETED_SUCCESS" and sorted(result["partitions"]) == keys, result
    assert _json(env, "stale")["stale"] == []
    assert _materialisations(pg, "library_s", "ocr_text") == dict.fromkeys(keys, 2)
    for downstream in ("summary", "search_index"):
        assert _materialisations(pg, "library_s", downstream) == dict.fromkeys(keys, 2)
    assert _materialisations(pg, "library_s", "keyframes") == keyframes_before  # upstream untouched
    backfills = pg.psql("SELECT status FROM bulk_actions", db="library_s").stdout.split()
    assert backfills == ["COMPLETED_SUCCESS"], backfills
