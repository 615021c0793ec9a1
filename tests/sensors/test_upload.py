"""Sensor ticks with build_sensor_context against a real instance and a real inbox folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    build_sensor_context,
)
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.test_utils import create_run_for_test

from media_assets.analysis.inspect import Limits
from media_assets.assets.jobs import ANALYSE_JOB_NAME
from media_assets.plumbing.config import Paths
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.registration import admit, register
from media_assets.service.forget import journal_path
from resources import build_resources
from resources.inbox import InboxResource
from resources.store import MediaStore
from sensors.upload import RECOVERED_TAG, media_upload_sensor

SENSOR = "media_upload_sensor"
# A queued run must say where its job comes from (the daemon's runs name the code location).
ORIGIN = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("medialens"), "__repository__").get_job_origin(
    ANALYSE_JOB_NAME
)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture
def resources(paths: Paths) -> dict[str, Any]:
    """The shared resources, with the inbox taking a file at its second look however soon it comes
    (the daemon's ticks are 5 s apart; these tests tick back to back) and never at its first (a
    busy machine may take longer than the quiet time between a drop and the next tick)."""
    built = build_resources(paths, env={})
    built["inbox"] = InboxResource(path=built["inbox"].path, settle_seconds=0, quiet_seconds=0)
    return built


def evaluate(instance: DagsterInstance, resources: dict[str, Any], cursor: str | None) -> SensorResult:
    """One evaluation and nothing more: what a tick does when the daemon dies before applying it."""
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = media_upload_sensor(ctx)
    assert isinstance(result, SensorResult)
    return result


def apply_partitions(instance: DagsterInstance, result: SensorResult) -> None:
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys or []))


def create_runs(
    instance: DagsterInstance, requests: list[RunRequest], status: DagsterRunStatus = DagsterRunStatus.QUEUED
) -> list[str]:
    """Runs for the requests as the daemon creates them (partition tag, run key, sensor name), and
    like it skipping a request whose run key this sensor already used. Returns the new run ids."""
    created = []
    for rr in requests:
        if rr.run_key and instance.get_runs(RunsFilter(tags={SENSOR_NAME_TAG: SENSOR, RUN_KEY_TAG: rr.run_key})):
            continue
        tags = {**rr.tags, SENSOR_NAME_TAG: SENSOR}
        if rr.run_key:
            tags[RUN_KEY_TAG] = rr.run_key
        if rr.partition_key:
            tags[PARTITION_NAME_TAG] = rr.partition_key
        run = create_run_for_test(
            instance, job_name=ANALYSE_JOB_NAME, status=status, tags=tags, remote_job_origin=ORIGIN
        )
        created.append(run.run_id)
    return created


def tick(instance: DagsterInstance, resources: dict[str, Any], cursor: str | None) -> SensorResult:
    """One evaluation, with its partitions added and its runs created as the daemon would."""
    result = evaluate(instance, resources, cursor)
    apply_partitions(instance, result)
    create_runs(instance, list(result.run_requests or []))
    return result


def drop(src: Path, inbox: Path, name: str | None = None) -> Path:
    dest = inbox / (name or src.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def test_a_file_is_taken_once_it_is_stable(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    store: MediaStore = resources["store"]
    dropped = drop(samples["messi5.jpg"], inbox.root)

    first = tick(instance, resources, None)
    assert not first.run_requests  # seen once: it may still be being written
    assert "waiting" in str(first.skip_reason)

    second = tick(instance, resources, first.cursor)
    assert len(second.run_requests or []) == 1
    run = (second.run_requests or [])[0]
    key = run.partition_key
    assert key is not None and key.startswith("messi5-")
    assert run.run_key == key and run.tags["medialens/source"] == "messi5.jpg"
    assert instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME) == [key]
    assert not dropped.exists()  # the inbox drains into the store
    source = store.read_source(key)
    assert Path(source["path"]).exists() and source["move"] is True
    assert json.loads(second.cursor or "{}") == {"pending": {}, "settled": []}

    third = tick(instance, resources, second.cursor)
    assert not third.run_requests
    assert json.loads(third.cursor or "{}") == {"pending": {}, "settled": [key]}  # its run was seen


def test_a_growing_file_is_not_taken(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    path = drop(samples["speech.mp3"], inbox.root)
    r1 = tick(instance, resources, None)
    with path.open("ab") as fh:  # the copy is still going on
        fh.write(b"\0" * 1000)
    r2 = tick(instance, resources, r1.cursor)
    assert not r2.run_requests and path.exists()
    r3 = tick(instance, resources, r2.cursor)
    assert len(r3.run_requests or []) == 1


def test_partial_and_hidden_names_are_ignored(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    for name in ("clip.mp4.part", "upload.tmp", ".DS_Store", "movie.crdownload"):
        drop(samples["messi5.jpg"], inbox.root, name)
    drop(samples["messi5.jpg"], inbox.root / ".hidden_dir", "x.jpg")
    r = tick(instance, resources, tick(instance, resources, None).cursor)
    assert not r.run_requests
    assert sorted(p.name for p in inbox.root.iterdir()) == sorted(
        [".DS_Store", ".hidden_dir", "clip.mp4.part", "movie.crdownload", "upload.tmp"]
    )


def test_same_bytes_twice_make_one_partition(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    drop(samples["astronaut.png"], inbox.root, "a.png")
    drop(samples["astronaut.png"], inbox.root, "sub/copy of a.png")
    r = tick(instance, resources, tick(instance, resources, None).cursor)
    assert len(r.run_requests or []) == 1
    assert len(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)) == 1
    dup = list((inbox.root / "duplicates").glob("*.png"))
    assert len(dup) == 1
    reason = (dup[0].parent / f"{dup[0].name}.reason.txt").read_text()
    assert "same bytes as" in reason

    # dropped again later, under yet another name: still no new partition or run
    drop(samples["astronaut.png"], inbox.root, "again.png")
    r2 = tick(instance, resources, tick(instance, resources, r.cursor).cursor)
    assert not r2.run_requests


def test_bad_files_are_set_aside_with_a_reason(
    samples: dict[str, Path],
    bad_inputs: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    inbox: InboxResource = resources["inbox"]
    for case in ("empty", "text_as_jpg", "random_as_wav", "truncated_video", "pixel_bomb"):
        drop(bad_inputs[case], inbox.root)
    outside = tmp_path / "secret.jpg"
    shutil.copyfile(samples["messi5.jpg"], outside)
    os.symlink(outside, inbox.root / "link.jpg")
    drop(samples["chelsea.webp"], inbox.root)  # one good file in the same drop

    r = tick(instance, resources, tick(instance, resources, None).cursor)
    assert [rr.partition_key.split("-")[0] for rr in r.run_requests or [] if rr.partition_key] == ["chelsea"]
    rejected = inbox.root / "rejected"
    reasons = {p.name[: -len(".reason.txt")]: p.read_text() for p in rejected.glob("*.reason.txt")}
    assert set(reasons) == {"empty.mp4", "notes.jpg", "noise.wav", "truncated.mp4", "bomb.png", "link.jpg"}
    assert "empty" in reasons["empty.mp4"]
    assert "text" in reasons["notes.jpg"]
    assert "40000x40000" in reasons["bomb.png"]
    assert "outside the inbox" in reasons["link.jpg"]
    assert outside.exists()  # a link is moved as a link; its target is never touched
    assert (rejected / "link.jpg").is_symlink()


def test_per_tick_cap_leaves_the_rest_for_the_next_tick(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    capped = {
        **resources,
        "inbox": InboxResource(path=resources["inbox"].path, max_files_per_tick=2, settle_seconds=0, quiet_seconds=0),
    }
    for name in ("messi5.jpg", "astronaut.png", "chelsea.webp", "basketball.png"):
        drop(samples[name], capped["inbox"].root)
    r1 = tick(instance, capped, None)
    r2 = tick(instance, capped, r1.cursor)
    assert len(r2.run_requests or []) == 1  # the tick's two new files share one run
    assert (r2.run_requests or [])[0].tags["medialens/files"] == "2"
    r3 = tick(instance, capped, r2.cursor)
    assert len(r3.run_requests or []) == 1
    assert len(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)) == 4


def test_new_files_of_a_tick_share_range_runs_of_neighbours(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], monkeypatch: Any
) -> None:
    import sensors.upload as upload

    monkeypatch.setattr(upload, "MAX_PARTITIONS_PER_RUN", 2)
    names = ("messi5.jpg", "astronaut.png", "chelsea.webp", "basketball.png", "speech.mp3")
    for name in names:
        drop(samples[name], resources["inbox"].root)
    r = tick(instance, resources, tick(instance, resources, None).cursor)
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert len(order) == 5
    runs = r.run_requests or []
    # 2 + 2 + 1: each range covers exactly its own new partitions, in the order they were added
    covered = []
    for run in runs:
        if run.partition_key:
            covered.append([run.partition_key])
            assert run.tags["medialens/source"] in names
            continue
        first, last = run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]
        covered.append(order[order.index(first) : order.index(last) + 1])
        assert run.run_key == f"{first}..{last}"
        assert run.tags["medialens/files"] == str(len(covered[-1]))
        assert all(n in names for n in run.tags["medialens/sources"].split(", "))
    assert [len(c) for c in covered] == [2, 2, 1]
    assert [k for c in covered for k in c] == order


# -- stability under writers ---------------------------------------------------------------------


def test_a_file_replaced_between_looks_is_looked_at_again(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    path = drop(samples["astronaut.png"], inbox.root, "photo.png")
    st = path.stat()
    r1 = tick(instance, resources, None)
    # Another file of the same size and mtime renamed over it (a writer's `x.part` -> `x`): only
    # the inode and ctime tell.
    other = inbox.root / "photo.png.part"
    shutil.copyfile(samples["astronaut.png"], other)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    r2 = tick(instance, resources, r1.cursor)
    assert not r2.run_requests and path.exists()
    r3 = tick(instance, resources, r2.cursor)
    assert len(r3.run_requests or []) == 1


def test_a_file_must_be_unchanged_for_the_settle_time(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    settling = {**resources, "inbox": InboxResource(path=resources["inbox"].path, settle_seconds=0.5, quiet_seconds=0)}
    drop(samples["messi5.jpg"], settling["inbox"].root)
    r1 = tick(instance, settling, None)
    r2 = tick(instance, settling, r1.cursor)  # unchanged, but only just seen
    assert not r2.run_requests
    time.sleep(0.6)
    r3 = tick(instance, settling, r2.cursor)
    assert len(r3.run_requests or []) == 1


def test_a_file_quiet_for_the_quiet_time_is_taken_at_its_first_look(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    quick = {**resources, "inbox": InboxResource(path=resources["inbox"].path, quiet_seconds=0.5)}
    dropped = drop(samples["messi5.jpg"], quick["inbox"].root)
    time.sleep(0.7)  # by the file system's own clock, nothing changed it for longer than 0.5 s
    first = tick(instance, quick, None)
    assert len(first.run_requests or []) == 1 and not dropped.exists()
    assert not list(quick["inbox"].root.iterdir())  # the clock's dotfile does not stay


def test_a_file_changed_within_the_quiet_time_waits_for_its_second_look(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    slow = {**resources, "inbox": InboxResource(path=resources["inbox"].path, settle_seconds=0, quiet_seconds=60)}
    old = drop(samples["astronaut.png"], slow["inbox"].root)
    os.utime(old, (1, 1))  # an ancient mtime (cp -p): the ctime still says "just now"
    path = drop(samples["speech.mp3"], slow["inbox"].root)
    r1 = tick(instance, slow, None)
    assert not r1.run_requests and old.exists()
    with path.open("ab") as fh:  # still being written
        fh.write(b"\0" * 1000)
    r2 = tick(instance, slow, r1.cursor)
    assert [r.tags["medialens/source"] for r in r2.run_requests or []] == ["astronaut.png"]
    r3 = tick(instance, slow, r2.cursor)
    assert [r.tags["medialens/source"] for r in r3.run_requests or []] == ["speech.mp3"]


def test_names_that_collide_in_duplicates_never_overwrite(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    inbox: InboxResource = resources["inbox"]
    dups = inbox.root / "duplicates"
    dups.mkdir(parents=True)
    (dups / "copy.png").write_bytes(b"put here by hand")  # no note: still not overwritten
    (dups / "copy (2).png.reason.txt").write_text("an earlier note whose file was deleted\n")
    drop(samples["astronaut.png"], inbox.root, "a.png")
    drop(samples["astronaut.png"], inbox.root, "one/copy.png")
    drop(samples["astronaut.png"], inbox.root, "two/copy.png")
    r = tick(instance, resources, tick(instance, resources, None).cursor)
    assert len(r.run_requests or []) == 1
    assert (dups / "copy.png").read_bytes() == b"put here by hand"
    assert "deleted" in (dups / "copy (2).png.reason.txt").read_text()
    moved = sorted(p.name for p in dups.iterdir() if not p.name.endswith(".reason.txt"))
    assert moved == ["copy (3).png", "copy (4).png", "copy.png"]
    notes = {(dups / f"{n}.reason.txt").read_text() for n in ("copy (3).png", "copy (4).png")}
    assert all("same bytes as a-" in n for n in notes)
    assert {"dropped as one/copy.png" in n for n in notes} == {True, False}


# -- recovery of what an interrupted tick had taken ------------------------------------------------


def take_without_applying(
    samples: dict[str, Path], names: list[str], instance: DagsterInstance, resources: dict[str, Any]
) -> tuple[SensorResult, SensorResult]:
    """Drop `names`; a first look, then a tick that takes them but whose result is never applied."""
    for name in names:
        drop(samples[name], resources["inbox"].root)
    first = tick(instance, resources, None)
    lost = evaluate(instance, resources, first.cursor)
    assert lost.run_requests
    assert not [p for p in resources["inbox"].root.iterdir() if p.is_file()]  # out of the inbox already
    return first, lost


def requested_partitions(requests: list[RunRequest], order: list[str]) -> list[str]:
    out: list[str] = []
    for rr in requests:
        if rr.partition_key:
            out.append(rr.partition_key)
        else:
            out += order[order.index(rr.tags[RANGE_START]) : order.index(rr.tags[RANGE_END]) + 1]
    return out


def test_files_taken_by_a_tick_whose_result_was_lost_get_partitions_and_runs(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    first, lost = take_without_applying(samples, ["messi5.jpg", "chelsea.webp"], instance, resources)
    assert instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME) == []

    # The daemon died: the next tick starts from the cursor the lost one started from.
    again = tick(instance, resources, first.cursor)
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert sorted(order) == sorted(k for req in lost.dynamic_partitions_requests or [] for k in req.partition_keys)
    assert requested_partitions(list(again.run_requests or []), order) == order
    store: MediaStore = resources["store"]
    assert all(Path(store.read_source(k)["path"]).exists() for k in order)
    assert not tick(instance, resources, again.cursor).run_requests  # recovered once


def test_partitions_added_but_runs_never_created_get_their_runs(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    _, lost = take_without_applying(samples, ["messi5.jpg", "chelsea.webp", "astronaut.png"], instance, resources)
    apply_partitions(instance, lost)  # the daemon died after adding them, before creating the runs
    again = tick(instance, resources, lost.cursor)
    assert not again.dynamic_partitions_requests
    # The same runs, by the same run keys: had the daemon created one of them, it would skip it.
    assert [r.run_key for r in again.run_requests or []] == [r.run_key for r in lost.run_requests or []]
    assert all(r.tags[RECOVERED_TAG] == "true" for r in again.run_requests or [])
    after = tick(instance, resources, again.cursor)
    assert not after.run_requests
    assert json.loads(after.cursor or "{}")["settled"] == sorted(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))


def test_a_file_with_a_run_or_a_media_file_materialisation_is_not_requested_again(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], monkeypatch: Any
) -> None:
    import sensors.upload as upload

    monkeypatch.setattr(upload, "MAX_PARTITIONS_PER_RUN", 1)  # one run per file: each its own fate
    names = ["messi5.jpg", "chelsea.webp", "astronaut.png", "basketball.png", "speech.mp3"]
    _, lost = take_without_applying(samples, names, instance, resources)
    apply_partitions(instance, lost)
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    queued, started, failed, materialised, nothing = order
    runs = {r.partition_key: r for r in lost.run_requests or []}
    create_runs(instance, [runs[queued]], DagsterRunStatus.QUEUED)
    create_runs(instance, [runs[started]], DagsterRunStatus.STARTED)
    create_runs(instance, [runs[failed]], DagsterRunStatus.FAILURE)  # failed_batch_sensor's business
    instance.report_runless_asset_event(AssetMaterialization("media_file", partition=materialised))

    again = tick(instance, resources, lost.cursor)
    assert [r.partition_key for r in again.run_requests or []] == [nothing]
    assert not tick(instance, resources, again.cursor).run_requests


def test_a_range_run_covers_its_members(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    _, lost = take_without_applying(samples, ["messi5.jpg", "chelsea.webp", "astronaut.png"], instance, resources)
    apply_partitions(instance, lost)
    first, middle, last = instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)
    create_run_for_test(
        instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED, tags={RANGE_START: first, RANGE_END: middle}
    )
    again = tick(instance, resources, lost.cursor)
    assert [r.partition_key for r in again.run_requests or []] == [last]


def test_a_run_from_before_the_file_was_taken_does_not_count(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    """The same name and bytes dropped again after `medialens forget` come back under the same key;
    a range run of the earlier life is not this file's run."""
    _, lost = take_without_applying(samples, ["messi5.jpg"], instance, resources)
    apply_partitions(instance, lost)
    (key,) = instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)
    create_run_for_test(
        instance, job_name=ANALYSE_JOB_NAME, status=DagsterRunStatus.SUCCESS, tags={RANGE_START: key, RANGE_END: key}
    )
    store: MediaStore = resources["store"]
    record = store.read_source(key)
    store.write_source(key, {**record, "registered_ts": time.time() + 3600})  # taken after that run
    again = tick(instance, resources, lost.cursor)
    assert [r.partition_key for r in again.run_requests or []] == [key]


def test_the_same_bytes_taken_twice_by_interrupted_ticks_are_registered_once(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    inbox: InboxResource = resources["inbox"]
    first, _ = take_without_applying(samples, ["astronaut.png"], instance, resources)
    # A second, overlapping evaluation (a timed-out one still running) took a copy under another name.
    copy = inbox.root / "copy.png"
    shutil.copyfile(samples["astronaut.png"], copy)
    a = admit(copy, Limits(), [])
    assert a.key is not None and a.status == "new"
    taken = store.incoming_dir / f"{a.key}.png"
    register(store, a, taken, move=True)
    os.replace(copy, taken)

    again = tick(instance, resources, first.cursor)
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert len(order) == 1 and requested_partitions(list(again.run_requests or []), order) == order
    dup = inbox.root / "duplicates"
    assert len(list(dup.glob("*.png"))) == 1
    assert "same bytes as" in next(dup.glob("*.reason.txt")).read_text()
    assert len(list(store.incoming_dir.iterdir())) == 1


def test_a_taken_file_without_its_record_is_set_aside_not_analysed(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    """An older version moved the file before writing its record; a forgotten media's leftover has
    none either: neither is registered behind the user's back, and neither is lost."""
    store: MediaStore = resources["store"]
    first, lost = take_without_applying(samples, ["messi5.jpg"], instance, resources)
    (key,) = lost.dynamic_partitions_requests[0].partition_keys  # type: ignore[index]
    store.source_path(key).unlink()
    again = tick(instance, resources, first.cursor)
    assert not again.run_requests and not instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)
    rejected = resources["inbox"].root / "rejected"
    assert [p.name for p in rejected.glob("*.jpg")] == [f"{key}.jpg"]
    assert "without the record" in (rejected / f"{key}.jpg.reason.txt").read_text()


def test_a_file_being_forgotten_is_not_recovered(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    """`medialens forget` deletes the partition first and the taken file later (its journal says
    what is left to delete): in between, the file must not come back as new media."""
    store: MediaStore = resources["store"]
    first, lost = take_without_applying(samples, ["messi5.jpg"], instance, resources)
    (key,) = lost.dynamic_partitions_requests[0].partition_keys  # type: ignore[index]
    journal = journal_path(store, "media", key)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text("{}")
    again = tick(instance, resources, first.cursor)
    assert not again.run_requests and not instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)
    assert [p.name for p in store.incoming_dir.iterdir()] == [f"{key}.jpg"]  # the forget's to delete


def test_the_quiet_time_comes_from_the_environment(paths: Paths) -> None:
    assert build_resources(paths, env={})["inbox"].quiet_seconds == 2.0
    assert build_resources(paths, env={"MEDIALENS_INBOX_QUIET_SECONDS": "0"})["inbox"].quiet_seconds == 0.0
    with pytest.raises(ValueError, match="MEDIALENS_INBOX_QUIET_SECONDS='soon'"):
        build_resources(paths, env={"MEDIALENS_INBOX_QUIET_SECONDS": "soon"})
