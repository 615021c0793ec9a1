"""Sensor ticks with build_sensor_context against a real instance and a real inbox folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, SensorResult, build_sensor_context

from media_assets.partitions import MEDIA_PARTITIONS_NAME
from resources.inbox import InboxResource
from resources.store import MediaStore
from sensors.upload import media_upload_sensor


def tick(instance: DagsterInstance, resources: dict[str, Any], cursor: str | None) -> SensorResult:
    """One evaluation, with its partition requests applied as the daemon would."""
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = media_upload_sensor(ctx)
    assert isinstance(result, SensorResult)
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys or []))
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
    assert json.loads(second.cursor or "{}") == {"pending": {}}

    third = tick(instance, resources, second.cursor)
    assert not third.run_requests


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
    capped = {**resources, "inbox": InboxResource(path=resources["inbox"].path, max_files_per_tick=2)}
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
    order = instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME)
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
