"""Everything known about one media file, as `medialens show KEY` prints it (DESIGN contract).

Analyses that do not exist (yet) for a file are null, never missing keys, so scripts can rely on
the shape whatever has been analysed.
"""

from __future__ import annotations

from typing import Any

from media_assets.plumbing.people_log import person_of_faces
from media_assets.plumbing.review_log import review_of
from resources.store import MediaStore

# Keys of the contract filled by analysis assets; null until that analysis exists for the file.
ANALYSIS_KEYS = ("transcript", "ocr", "poses", "faces", "safety", "tags", "summary")


class UnknownMedia(KeyError):
    """No media with that key has been registered."""


def show(store: MediaStore, key: str) -> dict[str, Any]:
    """The contract object of one media partition, built from the assets' manifests and tables."""
    media = store.read_manifest("media_file", key)
    source = store.read_source(key) if store.source_path(key).exists() else None
    if media is None and source is None:
        raise UnknownMedia(key)
    out: dict[str, Any] = {
        "key": key,
        "source_name": (media or source or {}).get("source_name"),
        "kind": media["kind"] if media else None,
        "duration_s": media["duration_s"] if media else None,
        "keyframes": None,
        **{k: None for k in ANALYSIS_KEYS},
        "status": "analysed" if media else "registered (not ingested yet, or ingest failed)",
    }
    if media:
        out["media"] = {
            k: media.get(k)
            for k in (
                "container",
                "size_bytes",
                "width",
                "height",
                "fps",
                "video_codec",
                "audio_codec",
                "sample_rate",
                "channels",
                "sha256",
                "path",
                "streams",
            )
        }
    frames = store.read_manifest("keyframes", key)
    if frames and frames.get("kind") != "audio":
        rows = store.read_table(frames["table"]).select(["t", "path", "shot", "sharpness"]).to_pylist()
        out["keyframes"] = rows
    audio = store.read_manifest("audio_track", key)
    if audio:
        out["audio"] = {k: audio.get(k) for k in ("path", "duration_s", "sample_rate", "rms_dbfs", "peak_dbfs")}
    # Visual analyses of audio-only media do not exist (null), rather than being empty.
    visual = out["keyframes"] is not None
    ocr = store.read_manifest("ocr_text", key)
    if ocr and visual:
        out["ocr"] = {"lines": store.read_table(ocr["lines_table"]).to_pylist()}
    tags = store.read_manifest("tags", key)
    if tags and visual:
        out["tags"] = store.read_table(tags["media_table"]).select(["label", "score", "frames"]).to_pylist()
    poses = store.read_manifest("poses", key)
    if poses and visual:
        out["poses"] = _poses(store, poses, out["keyframes"])
    faces = store.read_manifest("faces", key)
    if faces and visual:
        person = person_of_faces(store)
        out["faces"] = [
            {
                "t": r["t"],
                "box": r["box"],
                "score": r["score"],
                "face_id": f"{key}/{r['kf']}/{r['face']}",
                "person_id": person.get(f"{key}/{r['kf']}/{r['face']}"),
            }
            for r in store.read_table(faces["table"]).select(["kf", "t", "face", "box", "score"]).to_pylist()
        ]
    safety = store.read_manifest("safety", key)
    if safety and visual:
        out["safety"] = {
            "verdict": safety["verdict"],
            "reasons": safety["reasons"],
            "labels": store.read_table(safety["table"]).select(["t", "label", "score", "box"]).to_pylist(),
            "restraint_cues": safety["restraint_cues"],
            # a person's decision on this verdict (plumbing/review_log.py); null when none applies
            "review": review_of(store, key, safety["verdict"]),
        }
    transcript = store.read_manifest("transcript", key)
    if transcript and transcript.get("table"):
        out["transcript"] = _transcript(store, transcript)
    summary = store.read_manifest("summary", key)
    if summary and summary.get("summary"):
        out["summary"] = summary["summary"]
    manifests = {
        "media_file": media,
        "keyframes": frames,
        "audio_track": audio,
        "ocr_text": ocr,
        "tags": tags,
        "poses": poses,
        "faces": faces,
        "safety": safety,
        "transcript": transcript,
        "summary": summary,
    }
    out["versions"] = {asset: m["version"] for asset, m in manifests.items() if m}
    return out


def _poses(store: MediaStore, manifest: dict[str, Any], keyframes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """People per keyframe, keypoints as the contract's [x, y, visibility] (z stays in the table)."""
    by_t: dict[float, list[dict[str, Any]]] = {kf["t"]: [] for kf in keyframes}
    for r in store.read_table(manifest["table"]).to_pylist():
        by_t.setdefault(r["t"], []).append(
            {"box": r["box"], "score": r["score"], "keypoints": [[x, y, vis] for x, y, _z, vis in r["keypoints"]]}
        )
    return [{"t": t, "persons": persons} for t, persons in sorted(by_t.items())]


def _transcript(store: MediaStore, manifest: dict[str, Any]) -> dict[str, Any]:
    rows = store.read_table(manifest["table"]).select(["start", "end", "text"]).to_pylist()
    return {
        "language": manifest.get("language") or None,
        "language_probability": manifest.get("language_probability"),
        "text": " ".join(r["text"] for r in rows),
        "segments": rows,
    }
