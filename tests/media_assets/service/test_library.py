"""The library listing on a home analysed by the real CLI, and uploads into the inbox."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from media_assets.analysis.inspect import Limits
from media_assets.plumbing.config import Paths
from media_assets.service.library import ACCEPTED_TYPES, UploadRefused, library, numbered, totals, upload
from resources.store import MediaStore
from sensors.inbox import list_inbox
from tests.conftest import TEST_SETTINGS
from tests.media_assets.test_cli import analysed_home, ml

ROOT = Path(__file__).resolve().parents[3]


# -- the listing ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], bad_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """messi5.jpg and speech.mp3 analysed, then truncated.mkv, which passes admission and fails in
    `keyframes` (its frames end before the container says): the environment and name -> key."""
    env, keys = analysed_home(tmp_path_factory.mktemp("library"), [samples["messi5.jpg"], samples["speech.mp3"]])
    p = ml(env, "analyse", str(bad_inputs["truncated_mkv"]), "--json")
    assert p.returncode == 1, p.stderr  # it failed, as intended
    (result,) = json.loads(p.stdout)["results"]
    assert result["status"] == "failed", result
    return env, {**keys, "truncated.mkv": result["key"]}


@pytest.fixture(scope="module")
def rows(analysed: tuple[dict[str, str], dict[str, str]]) -> Iterator[dict[str, dict]]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    env, _ = analysed
    store = MediaStore(root=str(Path(env["MEDIALENS_HOME"]) / "store"))
    with DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        listed = library(store, instance)
    yield {r["source_name"]: r for r in listed}


@pytest.mark.slow
def test_every_media_with_kind_duration_and_status(
    rows: dict[str, dict], analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, keys = analysed
    assert set(rows) == {"messi5.jpg", "speech.mp3", "truncated.mkv"}
    assert {name: r["key"] for name, r in rows.items()} == keys
    photo, speech, bad = rows["messi5.jpg"], rows["speech.mp3"], rows["truncated.mkv"]
    assert (photo["kind"], photo["duration_s"], photo["status"]) == ("image", None, "analysed")
    shown = json.loads(ml(env, "show", keys["speech.mp3"], "--json").stdout)
    assert (speech["kind"], speech["status"]) == ("audio", "analysed")
    assert speech["duration_s"] == pytest.approx(shown["duration_s"]) and 5 < speech["duration_s"] < 30
    assert photo["failed_assets"] == speech["failed_assets"] == [] and photo["reason"] is None
    # the bad file was taken into the store (so its kind and length are known) and failed after
    assert (bad["kind"], bad["status"]) == ("video", "failed")
    assert bad["failed_assets"][0] == "keyframes" and "media_file" not in bad["failed_assets"]
    assert "truncated" in bad["reason"] and bad["reason"].startswith("keyframes: ")
    assert "keyframes" in bad["missing_assets"] and not bad["stale_assets"]
    # analysed with the settings of this process: nothing stale, nothing missing
    assert all(r["stale_assets"] == [] for r in rows.values())
    assert photo["missing_assets"] == speech["missing_assets"] == []
    # when each was added: the failed one last, listed first
    assert all(r["added"] and r["added_ts"] > 1.6e9 for r in rows.values())
    assert bad["added_ts"] >= speech["added_ts"]
    t = totals(rows.values())
    assert (t["media"], t["stale"]) == (3, 0)
    assert t["by_status"] == {"analysed": 2, "analysing": 0, "registered-not-ingested": 0, "failed": 1}
    assert t["by_kind"] == {"video": 1, "audio": 1, "image": 1}


LIST = (
    "import json, warnings; warnings.filterwarnings('ignore')\n"
    "from dagster import DagsterInstance\n"
    "from media_assets.plumbing.config import Paths\n"
    "from media_assets.service.library import library\n"
    "from resources.store import MediaStore\n"
    "with DagsterInstance.get() as instance:\n"
    "    print(json.dumps(library(MediaStore(root=str(Paths.from_env().store)), instance)))\n"
)


@pytest.mark.slow
def test_staleness_shows_after_a_settings_change(
    analysed: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """Asset versions are fixed when a process loads the code location, as for `medialens stale`:
    the listing runs in a process started with the changed settings."""
    env, _ = analysed
    config = tmp_path / "medialens.yaml"
    config.write_text(TEST_SETTINGS + "ocr_text: {det_limit_side_len: 640}\n")
    p = subprocess.run(
        [sys.executable, "-c", LIST],
        env={**env, "MEDIALENS_CONFIG": str(config)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    listed = {r["source_name"]: r for r in json.loads(p.stdout)}
    stale_cli = json.loads(ml({**env, "MEDIALENS_CONFIG": str(config)}, "stale", "--json").stdout)["stale"]
    for name in ("messi5.jpg", "speech.mp3"):
        r = listed[name]
        assert r["stale_assets"][0] == "ocr_text", r  # the changed asset first, then what reads it
        assert not {"media_file", "keyframes", "audio_track", "transcript"} & set(r["stale_assets"])
        expected = {s["asset"] for s in stale_cli if s["partition"] == r["key"]}
        assert set(r["stale_assets"]) == expected  # the same verdict as `medialens stale`
    assert listed["truncated.mkv"]["stale_assets"] == []  # never analysed: missing, not stale
    assert totals(listed.values())["stale"] == 2
    # the CLI verb is the same function: `medialens library --stale --json`
    cli = ml({**env, "MEDIALENS_CONFIG": str(config)}, "library", "--stale", "--json")
    assert cli.returncode == 0, cli.stderr
    out = json.loads(cli.stdout)
    assert {r["source_name"]: r["stale_assets"] for r in out["media"]} == {
        n: listed[n]["stale_assets"] for n in ("messi5.jpg", "speech.mp3")
    }
    assert out["totals"]["media"] == 2 and out["totals"]["stale"] == 2
    text = ml({**env, "MEDIALENS_CONFIG": str(config)}, "library")
    assert text.returncode == 0 and "truncated.mkv" in text.stdout and "failed" in text.stdout


# -- upload ------------------------------------------------------------------------------------------
def png(color: str = "red") -> bytes:
    """A small real PNG (136 bytes)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


def noisy_png() -> bytes:
    """A PNG of noise: about 9 KB that do not compress."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 48), os.urandom(64 * 48 * 3)).save(buf, format="PNG")
    return buf.getvalue()


def inbox_names(paths: Paths) -> list[str]:
    return sorted(os.listdir(paths.inbox))


def test_upload_lands_whole_under_its_name(paths: Paths) -> None:
    data = png()
    dest = upload(paths, "holiday photo.png", data)
    assert dest == paths.inbox / "holiday photo.png"
    assert dest.read_bytes() == data
    assert inbox_names(paths) == ["holiday photo.png"]  # no temporary file left behind
    assert [c.rel for c in list_inbox(paths.inbox)] == ["holiday photo.png"]  # what the sensor sees


def test_upload_never_overwrites(paths: Paths) -> None:
    first = upload(paths, "photo.png", png("red"))
    second = upload(paths, "photo.png", io.BytesIO(png("blue")))  # a file-like works too
    assert (first.name, second.name) == ("photo.png", "photo (2).png")
    assert first.read_bytes() == png("red") and second.read_bytes() == png("blue")
    (paths.inbox / "photo (3).png").write_bytes(b"put there by hand")
    third = upload(paths, "photo.png", png("green"))
    assert third.name == "photo (4).png" and third.read_bytes() == png("green")
    assert (paths.inbox / "photo (3).png").read_bytes() == b"put there by hand"
    assert numbered("clip.mp4", 3) == "clip (3).mp4" and numbered("README", 2) == "README (2)"


class Watched(io.BytesIO):
    """An upload's bytes, read in small pieces; at every read it records what the sensor would
    see in the inbox (sensors/inbox.py `list_inbox`): nothing, until the file is whole."""

    def __init__(self, data: bytes, inbox: Path) -> None:
        super().__init__(data)
        self.inbox, self.seen = inbox, []

    def read(self, size: int | None = -1, /) -> bytes:
        self.seen.append([(c.rel, c.size) for c in list_inbox(self.inbox)])
        return super().read(min(size or 1, 500) if size and size > 0 else 500)


def test_the_sensor_never_sees_a_partial_upload(paths: Paths) -> None:
    data = noisy_png()  # read 500 bytes at a time: ~19 reads
    watched = Watched(data, paths.inbox)
    dest = upload(paths, "slow.png", watched)
    assert len(watched.seen) > 2 and all(seen == [] for seen in watched.seen), watched.seen
    assert [(c.rel, c.size) for c in list_inbox(paths.inbox)] == [("slow.png", len(data))]
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "no name"),
        ("  ", "no name"),
        ("a/b.png", "path separators"),
        ("..\\b.png", "path separators"),
        ("../b.png", "path separators"),
        (".hidden.png", "dot"),
        ("..", "dot"),
        ("photo.png.part", "ignores names ending"),
        ("rejected", "set-aside"),
        ("x" * 300 + ".png", "too long"),
    ],
)
def test_upload_refuses_bad_names(paths: Paths, name: str, why: str) -> None:
    with pytest.raises(UploadRefused, match=why):
        upload(paths, name, png())
    assert inbox_names(paths) == []


def test_upload_refuses_empty_and_non_media_and_oversized(paths: Paths) -> None:
    with pytest.raises(UploadRefused, match=r"empty\.png: the file is empty"):
        upload(paths, "empty.png", b"")
    with pytest.raises(UploadRefused, match="empty"):
        upload(paths, "empty.png", io.BytesIO(b""))
    with pytest.raises(UploadRefused) as refused:
        upload(paths, "notes.jpg", b"meeting notes: crane offline at pier 4\n")
    assert str(refused.value).startswith("notes.jpg: not a media file: it contains text")
    assert ACCEPTED_TYPES in str(refused.value) and "mp4" in ACCEPTED_TYPES and "png" in ACCEPTED_TYPES
    with pytest.raises(UploadRefused, match=r"^broken\.png: unreadable png image") as broken:
        upload(paths, "broken.png", png()[:40])
    assert ".upload-" not in str(broken.value)  # the user's name, never our temporary one
    with pytest.raises(UploadRefused, match=r"big\.png: over the 0\.001 MB limit \(media_file\.max_size_mb\)"):
        upload(paths, "big.png", noisy_png(), limits=Limits(max_size_mb=0.001))
    assert inbox_names(paths) == []  # nothing left behind, not even a temporary file


def test_upload_refuses_an_s3_inbox(tmp_path: Path) -> None:
    s3 = Paths.from_env({"MEDIALENS_HOME": str(tmp_path / "home"), "MEDIALENS_INBOX": "s3://bucket/drop"})
    with pytest.raises(UploadRefused, match="S3 prefix"):
        upload(s3, "photo.png", png())


def test_upload_sweeps_what_killed_uploads_left(paths: Paths) -> None:
    old, fresh = paths.inbox / ".upload-1-aaaa.part", paths.inbox / ".upload-2-bbbb.part"
    old.write_bytes(b"half")
    fresh.write_bytes(b"still being written")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    upload(paths, "photo.png", png())
    assert inbox_names(paths) == [fresh.name, "photo.png"]
