"""`audio_track`: 16 kHz mono audio of every video and audio file, for the speech models."""

import time
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis.audio import extract_audio
from media_assets.assets.transcript import transcribe_ahead
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import (
    LONG_MEDIA_S,
    PER_MEDIA,
    Manifest,
    Manifests,
    for_each_partition,
    per_media_result,
    step_log,
)
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.store import MediaStore

SETTINGS = current_settings()
VERSION = SETTINGS.version("audio_track")
ASSET = "audio_track"


def wav_bytes(duration_s: float | None, sample_rate: int) -> int | None:
    """The size of a 16-bit mono WAV of that duration (for a full disk's message); None unknown."""
    return 44 + 2 * round(duration_s * sample_rate) if duration_s else None


def audio_for(context: AssetExecutionContext, store: MediaStore, key: str, media: Manifest) -> Manifest:
    """Extract one partition's audio; images and silent videos have none (path is None)."""
    started = time.perf_counter()
    base = {"key": key, "version": VERSION, "kind": media["kind"], "path": None, "duration_s": 0.0}
    if media["kind"] == "image" or media["audio_codec"] is None:
        store.prune_other_versions(ASSET, key, VERSION)
        return base
    sample_rate = int(SETTINGS.of(ASSET)["sample_rate"])
    wav = store.artefact_dir(ASSET, VERSION, key).with_suffix(".wav")
    # Extracted into scratch and renamed into place: a kill or a full disk never leaves half a WAV.
    with store.atomic_file(
        wav, needed=wav_bytes(media["duration_s"], sample_rate), approx="about", what=f"16 kHz WAV of {key}"
    ) as tmp:
        track = extract_audio(
            Path(media["path"]),
            tmp,
            sample_rate=sample_rate,
            declared_duration_s=media["duration_s"],
            progress=(
                (lambda share: step_log(context).progress(f"{key}: extracted {share:.0%} of the audio"))
                if (media["duration_s"] or 0) >= LONG_MEDIA_S
                else None
            ),
            expect_full_duration=media["kind"] == "audio",
        )
    store.prune_other_versions(ASSET, key, VERSION)
    if track is None:
        return base
    return {
        **base,
        "path": str(wav),
        "sample_rate": track.sample_rate,
        "duration_s": track.duration_s,
        "rms_dbfs": track.rms_dbfs,
        "peak_dbfs": track.peak_dbfs,
        "seconds": round(time.perf_counter() - started, 2),
    }


@asset(
    **PER_MEDIA,
    code_version=VERSION,
    group_name="ingest",
    kinds={"pyav"},
    description="The first audio stream as 16 kHz mono WAV (what speech models read); none for images "
    "and videos without sound.",
)
def audio_track(
    context: AssetExecutionContext,
    media_file: Manifests,
    store: MediaStore,
    models: ModelRunner,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m["source_name"] for k, m in media_file.items()}
    # Each track written is handed to the transcript's background thread at once (transcribe_ahead):
    # speech runs beside keyframes and the vision models instead of after them.
    manifests = for_each_partition(
        context,
        lambda key: transcribe_ahead(
            context, models, inference_cache, key, audio_for(context, store, key, media_file[key])
        ),
        names,
    )

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "audio_seconds": m["duration_s"],
            "has_audio": m["path"] is not None,
            "rms_dbfs": m.get("rms_dbfs", -120.0),
            "peak_dbfs": m.get("peak_dbfs", -120.0),
        }
        if m["path"]:
            metadata["path"] = MetadataValue.path(m["path"])
        return metadata

    return per_media_result(manifests, VERSION, detail, ["kind", "duration_s", "rms_dbfs"])
