"""`transcript`: what is said in every video and audio file, with word timestamps and language."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset, get_dagster_logger

from media_assets.analysis import transcript as speech
from media_assets.assets.model_assets import md_table, model_asset, model_version
from media_assets.plumbing.ahead import Ahead
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import (
    LONG_MEDIA_S,
    Manifest,
    Manifests,
    for_each_partition,
    per_media_result,
    step_log,
)
from ops_gpu.executors import executor_kind
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


@dataclass(frozen=True)
class Transcribed:
    """One track's transcript and what it cost (no model time for a cache hit)."""

    result: speech.Transcript
    duration_s: float
    model_seconds: float
    hit: bool


def transcribe(
    audio_path: str,
    models: ModelRunner,
    scope: Any,
    progress: Callable[[float], None] | None = None,
    factory: Callable[..., speech.TranscriptModel] = speech.TranscriptModel,
) -> Transcribed:
    """Whisper over one WAV, or the cached result for its bytes (`scope`: the inference cache)."""
    digest = file_digest(audio_path) if scope is not None else ""
    cached = scope.get(digest) if scope is not None else None
    samples = speech.read_wav(audio_path)
    duration = samples.shape[0] / speech.SAMPLE_RATE
    if isinstance(cached, speech.Transcript):
        return Transcribed(cached, duration, 0.0, hit=True)
    started = time.perf_counter()
    result = models.load(factory, PARAMS)(samples, progress=progress)
    seconds = time.perf_counter() - started
    if scope is not None:
        scope.put(digest, result)
    return Transcribed(result, duration, seconds, hit=False)


AHEAD = Ahead(ASSET)


def background_model(params: speech.TranscriptParams, device: str) -> speech.TranscriptModel:
    """Whisper on one CPU thread: in the background it shares the cores with the step in front,
    whose decode and vision models use the others."""
    return speech.TranscriptModel(params, device, cpu_threads=1)


def transcribe_ahead(
    context: AssetExecutionContext, models: ModelRunner, cache: InferenceCache | None, key: str, audio: Manifest
) -> Manifest:
    """Start transcribing a partition's new audio track in the background (plumbing/ahead.py) when
    this run's `transcript` step will run later in this process; returns the manifest unchanged."""
    if audio.get("path") and transcript_runs_later_here(context):
        scope = cache.scope(ASSET, VERSION, get_dagster_logger().warning, context.run_id) if cache else None
        path = str(audio["path"])
        AHEAD.submit(
            context.run_id,
            key,
            (path, VERSION),
            lambda progress: transcribe(path, models, scope, progress, background_model),
        )
    return audio


def transcript_runs_later_here(context: AssetExecutionContext) -> bool:
    """In-process runs whose selection and steps include `transcript` (a multiprocess run's
    transcript step is another process, which could not take the result)."""
    run = context.run
    if executor_kind() != "in_process":
        return False
    if run.asset_selection and AssetKey(ASSET) not in run.asset_selection:  # empty: not recorded
        return False
    return run.step_keys_to_execute is None or ASSET in run.step_keys_to_execute


def transcript_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    audio: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Transcribe one partition's audio track; media without sound have no transcript (table None).
    An audio file transcribed before by this model version (same sha256) is read from the cache;
    one `audio_track` handed to the background thread (transcribe_ahead) is taken from there."""
    base = {"key": key, "version": VERSION, "model": MODEL_NAME, "table": None, "segments": 0}
    if not audio.get("path"):
        store.prune_other_versions(ASSET, key, VERSION)
        return base
    log = step_log(context)
    job = AHEAD.take(context.run_id, key, (str(audio["path"]), VERSION))
    if job is not None:
        duration = float(audio.get("duration_s") or 0.0)
        done: Transcribed = job.wait(on_progress=ProgressLog(context, key, duration))
        log.info(f"{key}: transcript done in the background, beside the vision models ({job.seconds:.1f} s)")
    else:
        scope = cache.scope(ASSET, VERSION, context.log.warning, context.run_id) if cache is not None else None
        done = transcribe(
            str(audio["path"]), models, scope, ProgressLog(context, key, float(audio.get("duration_s") or 0.0))
        )
    if done.hit:
        log.info(f"{key}: transcript from the inference cache")
    result, duration = done.result, done.duration_s
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
        "model_seconds": round(done.model_seconds, 2),
        "cache_hits": int(done.hit),
        "realtime_factor": round(duration / done.model_seconds, 1) if done.model_seconds > 0 else None,
        "in_background": job is not None,
        "text_preview": result.text[:300],
        "preview": [[round(s.start, 1), round(s.end, 1), s.text[:80]] for s in result.segments[:12]],
    }


@asset(
    **model_asset("transcript", group="speech"),
    # Last among the steps ready after `keyframes`: its work runs in the background from the moment
    # `audio_track` is written (transcribe_ahead), so the vision steps go first and this one takes
    # the result instead of idling the core whisper would otherwise leave to them.
    op_tags={"dagster/priority": "-1"},
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
                    "in_background": bool(m.get("in_background")),
                    "table": MetadataValue.path(m["table"]),
                    "text": MetadataValue.text(m["text_preview"]),
                    "preview": MetadataValue.md(md_table(["start s", "end s", "text"], m["preview"])),
                }
            )
        return metadata

    return per_media_result(manifests, VERSION, detail, ["segments", "language", "audio_seconds"])
