"""`summary`: a title, 2-4 sentences and topics per media file, from everything the analyses found.

The extractive summary always exists; the LLM (SmolLM2 via llama.cpp by default, Ollama or any
OpenAI-compatible server by config) only rewrites it and is kept when its answer passes the checks
(see media_assets/analysis/summary.py). When the configured LLM cannot be loaded (llama-cpp-python
is the optional `make llm` step) the summary is extractive and says why, instead of failing the
partition: a missing optional package must not stop a library from being analysed.
"""

import time
from dataclasses import replace
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import summary as summ
from media_assets.assets.model_assets import model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result, step_log
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "summary"
SETTINGS = current_settings()
PARAMS = summ.SummaryParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, summ, PARAMS)
MODEL_NAME = PARAMS.backend if PARAMS.backend == "none" else f"{PARAMS.backend}:{PARAMS.model or summ.MODEL_ID}"
NO_LLM = replace(PARAMS, backend="none")

SUMMARY_SCHEMA = pa.schema(
    [
        ("title", pa.string()),
        ("summary", pa.string()),
        ("topics", pa.list_(pa.string())),
        ("language", pa.string()),
        ("method", pa.string()),
        ("note", pa.string()),
    ]
)


def summarizer(models: ModelRunner, log: Any) -> tuple[summ.Summarizer, str]:
    """The configured summarizer (loaded once per process), or the extractive one and the reason."""
    try:
        return models.load(summ.Summarizer, PARAMS), ""
    except (ImportError, FileNotFoundError, OSError, ValueError) as exc:
        hint = " (install it with `make llm`)" if PARAMS.backend == "llamacpp" else ""
        reason = f"LLM {MODEL_NAME} unavailable: {exc}{hint}"
        log.warning(f"summary: {reason}; writing extractive summaries")
        return models.load(summ.Summarizer, NO_LLM), reason


def _rows(store: MediaStore, manifest: Manifest | None, table_key: str, columns: list[str]) -> list[dict]:
    if not manifest or not manifest.get(table_key):
        return []
    return store.read_table(manifest[table_key]).select(columns).to_pylist()


def inputs_for(store: MediaStore, analyses: dict[str, Manifest | None]) -> summ.SummaryInputs:
    """What one media's analyses say, as the summary's inputs (absent analyses give nothing)."""
    transcript, safety = analyses["transcript"] or {}, analyses["safety"]
    return summ.SummaryInputs.from_analyses(
        segments=_rows(store, transcript, "table", ["start", "end", "text"]),
        ocr_lines=_rows(store, analyses["ocr_text"], "lines_table", ["text", "first_t", "last_t"]),
        tags=_rows(store, analyses["tags"], "media_table", ["label", "score"]),
        language=transcript.get("language"),
        verdict=(safety["verdict"], safety.get("reasons") or []) if safety and safety.get("verdict") else None,
        kind=(analyses["media_file"] or {}).get("kind") or "video",
    )


def summary_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    analyses: dict[str, Manifest | None],
) -> Manifest:
    """Summarise one media file and store it (Parquet, one row) beside the other analyses."""
    model, unavailable = summarizer(models, context.log)
    started = time.perf_counter()
    result = model(inputs_for(store, analyses))
    seconds = time.perf_counter() - started
    if unavailable:
        result = replace(result, note=unavailable[:300])
    row = result.to_json()
    table = store.write_table(ASSET, VERSION, key, pa.Table.from_pylist([row], schema=SUMMARY_SCHEMA))
    store.prune_other_versions(ASSET, key, VERSION)
    stats = model.last_stats
    llm_s = stats.get("seconds", 0.0)
    step_log(context).info(f"{key}: {result.method} summary in {seconds:.1f} s")  # no content: logs outlive forget
    return {
        "key": key,
        "version": VERSION,
        "model": MODEL_NAME,
        "table": str(table),
        "summary": row,
        "method": result.method,
        "seconds": round(seconds, 2),
        "model_seconds": round(seconds, 2),  # extractive + LLM: all of it is model work
        "llm_calls": int(stats.get("calls", 0)),
        "prompt_tokens": int(stats.get("prompt_tokens", 0)),
        "completion_tokens": int(stats.get("completion_tokens", 0)),
        "llm_tokens_per_s": round(stats["completion_tokens"] / llm_s, 1) if llm_s > 0 else None,
    }


@asset(
    **model_asset("summary", group="search"),
    code_version=VERSION,
    kinds={"llm", "parquet"},
    description=f"Title, 2-4 sentence summary, topics and language per media ({MODEL_NAME}): an extractive "
    "summary of transcript, screen text, tags and safety verdict, rewritten by the LLM when its answer "
    "passes schema and grounding checks.",
)
def summary(
    context: AssetExecutionContext,
    media_file: Manifests,
    transcript: Manifests,
    ocr_text: Manifests,
    tags: Manifests,
    safety: Manifests,
    store: MediaStore,
    models: ModelRunner,
) -> MaterializeResult:
    def work(key: str) -> Manifest:
        analyses = {
            "media_file": media_file.get(key),
            "transcript": transcript.get(key),
            "ocr_text": ocr_text.get(key),
            "tags": tags.get(key),
            "safety": safety.get(key),
        }
        return summary_for(context, store, models, key, analyses)

    manifests = for_each_partition(context, work)

    def detail(m: Manifest) -> dict[str, Any]:
        s = m["summary"]
        metadata: dict[str, Any] = {
            "title": s["title"],
            "summary": MetadataValue.md(s["summary"]),
            "topics": MetadataValue.json(s["topics"]),
            "language": s["language"] or "unknown",
            "method": m["method"],
            "model": MODEL_NAME,
            "seconds": m["seconds"],
            "table": MetadataValue.path(m["table"]),
        }
        if s["note"]:
            metadata["note"] = s["note"]
        if m["llm_calls"]:
            metadata.update({k: m[k] for k in ("llm_calls", "prompt_tokens", "completion_tokens", "llm_tokens_per_s")})
        return metadata

    return per_media_result(manifests, VERSION, detail, ["method", "seconds", "llm_calls"])
