"""The upload sensor on an S3 inbox (MEDIALENS_INBOX=s3://bucket/prefix), against moto's S3 server.

A real HTTP server in a subprocess (moto_server on a free port of 127.0.0.1), so the sensor talks to
it through boto3 exactly as to MinIO or AWS: listing, conditional GETs, copies, deletes.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, RunRequest, SensorResult
from dagster._core.event_api import AssetRecordsFilter

from media_assets.assets.jobs import ANALYSE_JOB_NAME, analyse_media_job
from media_assets.plumbing.config import Paths
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from resources import build_resources
from resources.inbox import InboxResource
from resources.store import MediaStore
from sensors.s3_inbox import OBJECT_FIELD, S3Inbox, s3_client
from tests.sensors.test_upload import apply_partitions, create_runs, evaluate, requested_partitions

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

PREFIX = "drop/here"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server for this module's tests; stopped after them."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "moto_server exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start in 60 s"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """An S3 client and a fresh bucket (credentials as boto3 finds them: the environment)."""
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    client = s3_client(s3_endpoint, "us-east-1")
    bucket = f"inbox-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture
def resources(paths: Paths, s3: tuple[Any, str], s3_endpoint: str) -> dict[str, Any]:
    """The resources as `build_resources` makes them from MEDIALENS_INBOX=s3://..., with the inbox
    taking an object at its second look however soon it comes (these tests tick back to back)."""
    _, bucket = s3
    env = {"MEDIALENS_INBOX": f"s3://{bucket}/{PREFIX}/", "MEDIALENS_S3_ENDPOINT_URL": s3_endpoint, **CREDENTIALS}
    built = build_resources(paths, env=env)
    inbox: InboxResource = built["inbox"]
    assert inbox.is_s3 and inbox.path == f"s3://{bucket}/{PREFIX}" and inbox.endpoint_url == s3_endpoint
    built["inbox"] = InboxResource(
        path=inbox.path, endpoint_url=inbox.endpoint_url, region=inbox.region, settle_seconds=0
    )
    return built


def put(s3: tuple[Any, str], rel: str, data: bytes) -> None:
    client, bucket = s3
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{rel}", Body=data)


def objects(s3: tuple[Any, str], under: str = "") -> dict[str, bytes]:
    """rel -> bytes of every object under the prefix (or under `<prefix>/<under>`)."""
    client, bucket = s3
    start = f"{PREFIX}/{under}"
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(PREFIX) + 1 :]] = body
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def execute(defs: Definitions, instance: DagsterInstance, requests: list[RunRequest]) -> None:
    """Launch the requested runs as the daemon would, in process; each must succeed."""
    job = defs.resolve_job_def(ANALYSE_JOB_NAME)
    for rr in requests:
        result = job.execute_in_process(instance=instance, partition_key=rr.partition_key, tags=rr.tags)
        assert result.success


def materialisations(instance: DagsterInstance, asset: str) -> list[str]:
    """The partition of every materialisation of `asset`, one entry per event."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset)), limit=1000).records
    return [r.partition_key or "" for r in records]


@pytest.mark.slow
def test_objects_are_registered_once_duplicates_and_refusals_set_aside(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], s3: tuple[Any, str]
) -> None:
    from media_assets.definitions import defs as project

    defs = Definitions(assets=list(project.assets or []), jobs=[analyse_media_job], resources=resources)
    store: MediaStore = resources["store"]
    messi, chelsea, astronaut = (samples[n].read_bytes() for n in ("messi5.jpg", "chelsea.webp", "astronaut.png"))
    put(s3, "a.jpg", messi)
    put(s3, "sub/b.webp", chelsea)
    put(s3, "grow.png", astronaut[: len(astronaut) // 3])  # still being uploaded
    put(s3, "copy.jpg", messi)  # the same bytes as a.jpg
    put(s3, "notes.txt", b"shopping list: milk, eggs\n" * 20)
    put(s3, ".hidden.jpg", messi)  # never looked at
    put(s3, "clip.mp4.part", messi)

    started = time.monotonic()
    first = evaluate(instance, resources, None)
    assert not first.run_requests and "waiting" in str(first.skip_reason)
    put(s3, "grow.png", astronaut)  # replaced by the complete, bigger upload between two ticks

    cursor = first.cursor
    requests: list[RunRequest] = []
    results: list[SensorResult] = []
    quiet = 0
    while quiet < 2:  # ticks until two in a row have nothing to do
        assert len(results) < 10, "the inbox never became quiet"
        result = evaluate(instance, resources, cursor)
        results.append(result)
        apply_partitions(instance, result)
        execute(defs, instance, list(result.run_requests or []))  # before the next tick, as the daemon
        requests += result.run_requests or []
        cursor = result.cursor
        quiet = 0 if result.run_requests or "waiting" in str(result.skip_reason) else quiet + 1
    elapsed = time.monotonic() - started

    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert sorted(k.split("-")[0] for k in order) == ["a", "b", "grow"]
    by_name = {k.split("-")[0]: k for k in order}
    # the growing object was taken only once complete, by a later tick than the others
    assert by_name["grow"].endswith(sha(astronaut)[:10])
    added = [[k for req in r.dynamic_partitions_requests or [] for k in req.partition_keys or []] for r in results]
    assert sorted(added[0]) == sorted([by_name["a"], by_name["b"]]) and added[1] == [by_name["grow"]]
    # each media in exactly one run, analysed once
    assert sorted(requested_partitions(requests, order)) == sorted(order)
    assert sorted(materialisations(instance, "media_file")) == sorted(order)
    for key in order:
        record = store.read_source(key)
        assert record[OBJECT_FIELD]["url"].startswith("s3://") and record["move"] is True
        original = store.media_path(record["sha256"], record["suffix"])
        assert original.exists() and sha(original.read_bytes()) == record["sha256"]
        assert store.read_manifest("tags", key) is not None
    assert not [p for p in store.incoming_dir.iterdir() if not p.name.startswith(".")]

    # the bucket: the taken objects gone, the copy under duplicates/, the text under rejected/ with
    # its reason, the ignored names untouched
    left = objects(s3)
    assert sorted(left) == [
        ".hidden.jpg",
        "clip.mp4.part",
        "duplicates/copy.jpg",
        "duplicates/copy.jpg.reason.txt",
        "rejected/notes.txt",
        "rejected/notes.txt.reason.txt",
    ]
    assert left["duplicates/copy.jpg"] == messi
    assert f"same bytes as {by_name['a']}" in left["duplicates/copy.jpg.reason.txt"].decode()
    assert left["rejected/notes.txt"].startswith(b"shopping list")
    assert "text" in left["rejected/notes.txt.reason.txt"].decode()
    print(f"\n{len(results) + 1} ticks and {len(requests)} runs in {elapsed:.1f} s")


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no `except Exception` catches it)."""


def _die(*args: Any, **kwargs: Any) -> None:
    raise Killed


@pytest.mark.parametrize("point", ["downloaded", "recorded", "taken"])
def test_a_tick_killed_while_taking_an_object_registers_it_once(
    point: str,
    samples: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
    s3: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed with the object downloaded (not yet recorded), recorded (not yet in incoming/) or
    taken (in incoming/ with its record, the object not yet deleted): the next tick, from the cursor
    the killed one started from, registers it exactly once and leaves nothing in the bucket."""
    store: MediaStore = resources["store"]
    data = samples["chelsea.webp"].read_bytes()
    put(s3, "cat.webp", data)
    first = evaluate(instance, resources, None)

    with monkeypatch.context() as m:
        if point == "downloaded":
            m.setattr("sensors.upload.register", _die)
        elif point == "recorded":
            m.setattr(S3Inbox, "take", _die)
        else:
            m.setattr(S3Inbox, "_delete_if_unchanged", _die)
        with pytest.raises(Killed):
            evaluate(instance, resources, first.cursor)
    taken = (
        [p for p in store.incoming_dir.glob("*") if not p.name.startswith(".")] if store.incoming_dir.exists() else []
    )
    assert len(taken) == (1 if point == "taken" else 0)
    assert "cat.webp" in objects(s3)  # not lost

    again = evaluate(instance, resources, first.cursor)
    apply_partitions(instance, again)
    create_runs(instance, list(again.run_requests or []))
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert len(order) == 1 and order[0].endswith(sha(data)[:10])
    assert requested_partitions(list(again.run_requests or []), order) == order
    assert objects(s3) == {}  # taken (or its take finished): no copy under duplicates/
    record = store.read_source(order[0])
    assert Path(record["path"]).exists() and sha(Path(record["path"]).read_bytes()) == sha(data)
    after = evaluate(instance, resources, again.cursor)
    assert not after.run_requests and not after.dynamic_partitions_requests


def test_an_unreachable_endpoint_fails_no_tick(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], s3: tuple[Any, str]
) -> None:
    put(s3, "a.jpg", samples["messi5.jpg"].read_bytes())
    first = evaluate(instance, resources, None)
    inbox: InboxResource = resources["inbox"]
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    down = {**resources, "inbox": InboxResource(path=inbox.path, endpoint_url=dead, settle_seconds=0)}
    result = evaluate(instance, down, first.cursor)
    assert not result.run_requests and result.cursor == first.cursor  # what was pending stays pending
    back = evaluate(instance, resources, result.cursor)
    assert len(back.run_requests or []) == 1


def test_an_object_that_cannot_be_deleted_after_its_take_is_registered_once(
    samples: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
    s3: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sensors.s3_inbox import S3Error

    def denied(*args: Any, **kwargs: Any) -> None:
        raise S3Error("deleting: AccessDenied")

    put(s3, "cat.webp", samples["chelsea.webp"].read_bytes())
    first = evaluate(instance, resources, None)
    with monkeypatch.context() as m:
        m.setattr(S3Inbox, "_delete_if_unchanged", denied)
        taken = evaluate(instance, resources, first.cursor)  # taken all the same, with a warning
    apply_partitions(instance, taken)
    create_runs(instance, list(taken.run_requests or []))
    assert len(taken.run_requests or []) == 1 and "cat.webp" in objects(s3)
    again = evaluate(instance, resources, taken.cursor)  # the file still waits in incoming/ for its run
    assert not again.run_requests and not again.dynamic_partitions_requests
    assert objects(s3) == {}
    assert len(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)) == 1


def test_a_taken_file_without_its_record_goes_back_to_the_bucket(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], s3: tuple[Any, str]
) -> None:
    store: MediaStore = resources["store"]
    put(s3, "cat.webp", samples["chelsea.webp"].read_bytes())
    first = evaluate(instance, resources, None)
    lost = evaluate(instance, resources, first.cursor)  # taken, but the daemon never applied it
    (key,) = lost.dynamic_partitions_requests[0].partition_keys  # type: ignore[index]
    store.source_path(key).unlink()
    again = evaluate(instance, resources, first.cursor)
    assert not again.run_requests and not again.dynamic_partitions_requests
    left = objects(s3)
    assert sorted(left) == [f"rejected/{key}.webp", f"rejected/{key}.webp.reason.txt"]
    assert "without the record" in left[f"rejected/{key}.webp.reason.txt"].decode()
    assert not list(store.incoming_dir.glob(f"{key}*"))
