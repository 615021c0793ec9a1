"""`transcript`: what is said in every video and audio file, with word timestamps and language."""

import time
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import transcript as speech
from media_assets.assets.model_assets import MODEL_ASSET, md_table, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import (
    LONG_MEDIA_S,
    Manifest,
    Manifests,
    for_each_partition,
    per_media_result,
    step_log,
)
from resources.inference_cache import InferenceCache, file_digest
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "transcript"
SETTINGS = current_settings()
PARAMS = speech.TranscriptParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, speech, PARAMS)
MODEL_NAME = f"{speech.MODEL_ID}:{PARAMS.model}"


class ProgressLog:
    """Logs every further quarter of the audio's duration, so long files show they are moving
    (files shorter than LONG_MEDIA_S are done before anyone reads it: no lines)."""

    def __init__(self, context: AssetExecutionContext, key: str, duration_s: float) -> None:
        self.context, self.key, self.duration_s, self.next = context, key, duration_s, 0.25

    def __call__(self, fraction: float) -> None:
        if self.duration_s < LONG_MEDIA_S:
            return
        if fraction >= self.next:
            step_log(self.context).progress(f"{self.key}: transcribed {fraction:.0%} of {self.duration_s:.0f} s")
            while self.next <= fraction:
                self.next += 0.25


def transcript_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    audio: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Transcribe one partition's audio track; media without sound have no transcript (table None).
    An audio file transcribed before by this model version (same sha256) is read from the cache."""
    base = {"key": key, "version": VERSION, "model": MODEL_NAME, "table": None, "segments": 0}
    if not audio.get("path"):
        store.prune_other_versions(ASSET, key, VERSION)
        return base
    scope = cache.scope(ASSET, VERSION, context.log.warning, context.run_id) if cache is not None else None
    digest = file_digest(audio["path"]) if scope is not None else ""
    cached = scope.get(digest) if scope is not None else None
    result = cached if isinstance(cached, speech.Transcript) else None
    hit = result is not None
    samples = speech.read_wav(audio["path"])
    duration = samples.shape[0] / speech.SAMPLE_RATE
    started = time.perf_counter()
    if result is not None:
        step_log(context).info(f"{key}: transcript from the inference cache")
    else:
        model = models.load(speech.TranscriptModel, PARAMS)
        result = model(samples, progress=ProgressLog(context, key, duration))
        if scope is not None:
            scope.put(digest, result)
    model_seconds = 0.0 if hit else time.perf_counter() - started
    table = store.write_table(ASSET, VERSION, key, speech.transcript_table(result))
    store.prune_other_versions(ASSET, key, VERSION)
    words = sum(len(s.words) for s in result.segments)
    return {
        **base,
        "table": str(table),
        "segments": len(result.segments),
        "words": words,
        "language": result.language,
        "language_probability": round(result.language_probability, 3),
        "audio_seconds": round(duration, 2),
        "model_seconds": round(model_seconds, 2),
        "cache_hits": int(hit),
        "realtime_factor": round(duration / model_seconds, 1) if model_seconds > 0 else None,
        "text_preview": result.text[:300],
        "preview": [[round(s.start, 1), round(s.end, 1), s.text[:80]] for s in result.segments[:12]],
    }


@asset(
    **{**MODEL_ASSET, "group_name": "speech"},
    code_version=VERSION,
    kinds={"ctranslate2", "parquet"},
    description=f"Speech to text ({MODEL_NAME}, VAD on): segments with start/end, text, log-prob and "
    "word timestamps, and the detected language; none for images and silent videos.",
)
def transcript(
    context: AssetExecutionContext,
    audio_track: Manifests,
    store: MediaStore,
    models: ModelRunner,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    manifests = for_each_partition(
        context, lambda key: transcript_for(context, store, models, key, audio_track[key], inference_cache)
    )

    def detail(m: Manifest) -> dict[str, Any]:
        metadata: dict = {"dagster/row_count": m["segments"], "model": MODEL_NAME, "has_speech_track": bool(m["table"])}
        if m["table"]:
            metadata.update(
                {
                    "language": m["language"],
                    "language_probability": m["language_probability"],
                    "words": m["words"],
                    "audio_seconds": m["audio_seconds"],
                    "model_seconds": m["model_seconds"],
                    "cache_hits": m["cache_hits"],
                    "table": MetadataValue.path(m["table"]),
                    "text": MetadataValue.text(m["text_preview"]),
                    "preview": MetadataValue.md(md_table(["start s", "end s", "text"], m["preview"])),
                }
            )
        return metadata

    return per_media_result(manifests, VERSION, detail, ["segments", "language", "audio_seconds"])
