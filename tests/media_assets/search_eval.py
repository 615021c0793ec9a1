"""A moment-search evaluation set: generated media, queries with known answers, top-1 accuracy and MRR.

Shared by `bench/ranking.py` (prints the numbers) and `tests/media_assets/service/test_search_ranking.py`
(a floor and the OCR-vs-speech quality bar), so both measure the same thing.

The corpus (`build_corpus`) is made here, deterministically, from espeak-ng speech and Pillow slides:

- four recordings (two English, two German), seven sentences each on unrelated topics, joined with
  a short pause so every sentence's start is known from the audio itself (`sentence_starts`);
- one silent slide video, one line of text per slide: long lines (English and German) that queries
  aim at, and one-word lines ("Agenda", "UNICEF", "2024", "Wetter", "Danke") that sit close to many
  queries in the embedding space. The hard case of the issue is in it: the German query "egoistisch
  und kaltherzig" whose answer is the English sentence "cold-hearted and rather selfish", with the
  OCR line "UNICEF" as a distractor.

About 140 s of speech in all: the corpus analyses in a few minutes on two cores (Whisper base).

`QUERIES` are `Query(text, media, source, t, group)`: the expected media file name, the source of the
hit that answers it ("transcript" or "ocr") and the second the answer starts at (None: any time).
`group` is "en" (English query, English content), "de" (German, German), "cross" (the other
language's content) or "exact" (a code, number or name typed as shown, where a near twin differs only
in it). Queries that target speech paraphrase it instead of quoting it; a few queries
name a one-word slide exactly ("UNICEF"), so a ranking change cannot win by burying short OCR lines.

Scoring rules (`rank_of`, `evaluate`):

- a hit is correct when its key is the expected media's key, its source is the expected source and,
  when the query has an expected time, `|hit.start - t| <= TIME_TOLERANCE_S` (2 s). A transcript hit's
  start is the sentence that matched best (search narrows the 30-s window to it), an OCR hit's start
  is when the line was first seen, so both must land on the right sentence or slide;
- `summary` hits of the expected media are skipped (neither right nor wrong, and they take no rank):
  a media-wide summary is drawn from the same sentences and says nothing about the moment. Every other
  hit takes a rank, including summaries of other media, tags and OCR lines;
- the rank is the 1-based position of the first correct hit among the ranked ones; top-1 accuracy is
  the share of queries with rank 1, MRR the mean of 1/rank (0 when no correct hit is in the list, so
  it depends on the limit the search ran with: the bench and the test use 10).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from media_assets.service.samples import render_slide, require_tools, speak

TIME_TOLERANCE_S = 2.0
PAUSE_S = 0.5  # silence after each sentence: clear sentence ends for Whisper, exact starts for us
SLIDE_S = 4  # seconds per slide of slides.mp4
SLIDE_SIZE = (1280, 720)
GROUPS = ("en", "de", "cross", "exact")

# (file name, espeak voice, sentences). Every sentence is on its own topic, so a paraphrase has one answer.
RECORDINGS: list[tuple[str, str, list[str]]] = [
    (
        "audiobook_en.wav",
        "en",
        [
            "The village lay in a green valley beside a wide river.",
            "Everybody there knew the miller, a rich man with a hard face.",
            "People said he was cold-hearted and rather selfish, and nobody trusted him.",
            "In spring the river flooded the fields near the old bridge.",
            "The children of the village collected money for an orphanage in the city.",
            "At night the baker's daughter played the violin by the open window.",
            "Snow closed the mountain pass for three weeks every winter.",
        ],
    ),
    (
        "lecture_en.wav",
        "en",
        [
            "Good afternoon, and welcome to this short lecture about healthy sleep.",
            "Adults should sleep between seven and nine hours every night.",
            "Drinking coffee late in the evening makes it harder to fall asleep.",
            "Our train to Munich was forty minutes late because of a signal failure.",
            "Next year's budget will be presented at the general meeting in March.",
            "Remember to water the tomato plants twice a week during the summer.",
            "The museum opens at ten in the morning and closes at six in the evening.",
        ],
    ),
    (
        "nachrichten_de.wav",
        "de",
        [
            "Guten Abend, hier sind die Nachrichten des Tages.",
            "Wegen des Sturms fallen morgen viele Züge zwischen Hamburg und Berlin aus.",
            "Die Schulen bleiben wegen der Ferien zwei Wochen geschlossen.",
            "Morgen beginnt das große Musikfest am See.",
            "Am Wochenende wird es warm, mit bis zu dreißig Grad.",
            "Die Mannschaft hat das Spiel mit drei zu eins gewonnen.",
            "Die Bank hat die Zinsen erhöht.",
        ],
    ),
    (
        "maerchen_de.wav",
        "de",
        [
            "Hier ist eine Geschichte für Kinder, die meine Großmutter oft erzählt hat.",
            "Es war einmal ein armer Fischer, der mit seiner Frau in einer kleinen Hütte am Meer lebte.",
            "Eines Tages fing er einen goldenen Fisch, der sprechen konnte.",
            "Die Frau des Fischers war gierig und wollte immer mehr haben.",
            "Der Leuchtturm an der Küste warnte die Schiffe vor den Felsen.",
            "Im Wald wohnte eine alte Hexe in einem Haus aus Lebkuchen.",
            "Und wenn sie nicht gestorben sind, dann leben sie noch heute.",
        ],
    ),
]

# One line per slide of slides.mp4, shown for SLIDE_S seconds each; the title bands differ a lot in
# luma so every slide change is a shot change (and a keyframe).
SLIDES: list[tuple[str, tuple[int, int, int]]] = [
    ("Agenda", (20, 40, 90)),
    ("Quarterly sales grew by twelve percent in Europe", (240, 150, 30)),
    ("UNICEF", (20, 100, 50)),
    ("Parken nur für Mitarbeiter erlaubt", (200, 60, 160)),
    ("2024", (250, 230, 60)),
    ("Fire exit on the left side of the building", (10, 10, 10)),
    ("Wetter", (120, 200, 230)),
    ("Rauchen ist im ganzen Gebäude verboten", (150, 30, 30)),
    ("Danke", (90, 160, 90)),
    # pairs that differ only in a code, a number or a name: what a user types exactly and what the
    # meaning of a sentence blurs (the "exact" group)
    ("Flight LH 2291 to Oslo is delayed", (250, 250, 250)),
    ("Flight BA 118 to Rome is on time", (40, 40, 160)),
    ("Invoice 2024-0815 is overdue", (230, 150, 50)),
    ("Invoice 2023-0412 has been paid", (20, 90, 60)),
    ("Dr. Wojciechowski, room 3.14", (200, 200, 60)),
    ("Dr. Schneider, room 2.07", (110, 30, 30)),
]
SLIDE_VIDEO = "slides.mp4"
SHORT_OCR = tuple(text for text, _ in SLIDES if " " not in text)


class Query(NamedTuple):
    text: str
    media: str  # expected media file name
    source: str  # expected source of the answering hit: "transcript" or "ocr"
    t: float | None  # second the answer starts at; None: any time
    group: str  # "en" | "de" | "cross"


def _offsets(voice: str, sentences: Sequence[str]) -> list[float]:
    """The second each sentence starts at in the joined recording (espeak-ng's length + PAUSE_S each)."""
    out, t = [], 0.0
    with tempfile.TemporaryDirectory(prefix="medialens-eval-") as tmp:
        for i, sentence in enumerate(sentences):
            out.append(round(t, 3))
            with wave.open(str(speak(sentence, Path(tmp) / f"{i}.wav", voice=voice))) as src:
                t += src.getnframes() / src.getframerate() + PAUSE_S
    return out


_STARTS: dict[str, list[float]] = {}


def sentence_starts(media: str) -> list[float]:
    """Start second of each sentence of recording `media` (computed once per process from espeak-ng)."""
    if media not in _STARTS:
        (voice, sentences) = next((v, s) for name, v, s in RECORDINGS if name == media)
        _STARTS[media] = _offsets(voice, sentences)
    return _STARTS[media]


def _say(media: str, sentence: int, text: str, group: str) -> Query:
    return Query(text, media, "transcript", sentence_starts(media)[sentence], group)


def _shown(line: str, text: str, group: str) -> Query:
    index = next(i for i, (s, _) in enumerate(SLIDES) if s == line)
    return Query(text, SLIDE_VIDEO, "ocr", float(index * SLIDE_S), group)


def queries() -> list[Query]:
    """The evaluation queries (needs espeak-ng: the expected times come from the audio)."""
    book, lecture, news, tale = (name for name, _, _ in RECORDINGS)
    return [
        # English query, English speech
        _say(book, 2, "a man nobody trusted because he only thought of himself", "en"),
        _say(book, 3, "the river overflowed its banks in springtime", "en"),
        _say(book, 4, "raising donations for orphans", "en"),  # UNICEF: a one-word slide on charity
        _say(book, 5, "a girl making music at the window at night", "en"),
        _say(book, 6, "the road over the mountains was blocked by snow", "en"),
        _say(lecture, 1, "how many hours of rest do grown-ups need", "en"),
        _say(lecture, 2, "caffeine at night keeps you awake", "en"),
        _say(lecture, 4, "the financial plan for the coming year", "en"),  # Agenda, 2024: one-word slides
        _say(lecture, 5, "watering vegetables in the garden", "en"),
        _say(lecture, 6, "when does the museum open", "en"),
        # German query, German speech
        _say(news, 1, "Zugausfälle wegen Unwetter", "de"),
        _say(news, 2, "kein Unterricht in den Ferien", "de"),
        _say(news, 3, "ein Musikfestival am Wasser", "de"),
        _say(news, 4, "Wie wird das Wetter am Wochenende?", "de"),  # Wetter: the same word on a slide
        _say(news, 5, "Ergebnis des Fußballspiels", "de"),
        _say(news, 6, "die Bank verlangt höhere Zinsen", "de"),
        _say(tale, 0, "ein Märchen, das die Oma erzählt", "de"),
        _say(tale, 2, "ein Fischer fängt einen sprechenden Fisch", "de"),
        _say(tale, 3, "die habgierige Ehefrau", "de"),
        _say(tale, 4, "ein Leuchtturm warnt die Schiffe", "de"),
        _say(tale, 5, "Hexenhaus im Wald", "de"),
        # German query, English speech
        _say(book, 2, "egoistisch und kaltherzig", "cross"),  # the case: "UNICEF" ranked first
        _say(book, 4, "Spenden für ein Waisenhaus", "cross"),  # UNICEF
        _say(lecture, 1, "Wie lange sollten Erwachsene schlafen?", "cross"),
        _say(lecture, 3, "Verspätung des Zuges nach München", "cross"),  # the storm's cancelled trains
        _say(lecture, 6, "Öffnungszeiten des Museums", "cross"),
        # English query, German speech
        _say(news, 1, "trains cancelled because of the storm", "cross"),
        _say(news, 2, "the schools are closed for the holidays", "cross"),
        _say(news, 4, "a hot weekend with thirty degrees", "cross"),  # Wetter
        _say(news, 5, "the team won the match three to one", "cross"),
        _say(tale, 3, "the fisherman's greedy wife", "cross"),
        _say(tale, 5, "a witch living in a gingerbread house", "cross"),
        _say(tale, 6, "they lived happily ever after", "cross"),
    ] + slide_queries()


def slide_queries() -> list[Query]:
    """The queries answered by slides (no speech needed to know their answers)."""
    return [
        # the longer slide lines, in their language and across
        _shown("Quarterly sales grew by twelve percent in Europe", "sales increased in Europe", "en"),
        _shown("Fire exit on the left side of the building", "where is the fire exit", "en"),
        _shown("Parken nur für Mitarbeiter erlaubt", "Parkplatz nur für Angestellte", "de"),
        _shown("Parken nur für Mitarbeiter erlaubt", "staff parking only", "cross"),
        _shown("Rauchen ist im ganzen Gebäude verboten", "no smoking anywhere in the building", "cross"),
        _shown("Fire exit on the left side of the building", "Notausgang auf der linken Seite", "cross"),
        # a one-word slide asked for by name: must still be found
        _shown("UNICEF", "UNICEF", "en"),
        _shown("Agenda", "Agenda", "en"),
        # codes, numbers and names typed as shown; each slide has a twin that differs only in them
        _shown("Flight LH 2291 to Oslo is delayed", "LH 2291", "exact"),
        _shown("Flight BA 118 to Rome is on time", "flight BA 118", "exact"),
        _shown("Invoice 2024-0815 is overdue", "invoice 2024-0815", "exact"),
        _shown("Invoice 2023-0412 has been paid", "2023-0412", "exact"),
        _shown("Dr. Wojciechowski, room 3.14", "Wojciechowski", "exact"),
        _shown("Dr. Schneider, room 2.07", "room 2.07", "exact"),
    ]


class _Queries(Sequence[Query]):
    """`QUERIES`, built on first use (the expected times need espeak-ng, not every import does)."""

    _items: list[Query] | None = None

    def _all(self) -> list[Query]:
        if self._items is None:
            self._items = queries()
        return self._items

    def __getitem__(self, i: Any) -> Any:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())


QUERIES: Sequence[Query] = _Queries()


# ------------------------------------------------------------------------------------------- corpus


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-nostdin", *args[:-1], "-fflags", "+bitexact", args[-1]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"ffmpeg failed: {p.stderr.strip()}")


def _recording(out: Path, voice: str, sentences: Sequence[str], work: Path) -> None:
    """The sentences spoken one after the other, each followed by PAUSE_S of silence (one WAV)."""
    with wave.open(str(out), "wb") as dst:
        for i, sentence in enumerate(sentences):
            with wave.open(str(speak(sentence, work / f"{out.stem}-{i}.wav", voice=voice))) as src:
                if i == 0:
                    dst.setparams(src.getparams())
                dst.writeframes(src.readframes(src.getnframes()))
                pause = int(round(src.getframerate() * PAUSE_S))
                dst.writeframes(b"\0" * pause * src.getsampwidth() * src.getnchannels())


def _slide(text: str, band: tuple[int, int, int], path: Path) -> None:
    """A white slide, one line of large black centred text under a coloured band (no page number)."""
    render_slide(text, band, path, SLIDE_SIZE)


def _slides(out: Path, work: Path) -> None:
    lines = []
    for i, (text, band) in enumerate(SLIDES):
        png = work / f"slide{i}.png"
        _slide(text, band, png)
        lines += [f"file '{png}'", f"duration {SLIDE_S}"]
    lines.append(lines[-2])  # the concat demuxer ignores the last duration unless the file is repeated
    (work / "slides.txt").write_text("\n".join(lines) + "\n")
    _ffmpeg(
        "-f", "concat", "-safe", "0", "-i", str(work / "slides.txt"), "-an", "-r", "25",
        "-t", str(SLIDE_S * len(SLIDES)), "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
        "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out),
    )  # fmt: skip


def build_corpus(out_dir: Path) -> list[Path]:
    """Write the recordings and the slide video into out_dir (same bytes every time); their paths.
    Files that already exist are kept."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix="medialens-eval-") as tmp:
        work = Path(tmp)
        for name, voice, sentences in RECORDINGS:
            path = out_dir / name
            if not path.exists():
                part = out_dir / f".{path.stem}.part{path.suffix}"
                _recording(part, voice, sentences, work)
                part.replace(path)
            paths.append(path)
        path = out_dir / SLIDE_VIDEO
        if not path.exists():
            part = out_dir / f".{path.stem}.part{path.suffix}"
            _slides(part, work)
            part.replace(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------- analyse and search


def cli_env(home: Path, settings: str = "summary:\n  backend: none\n") -> dict[str, str]:
    """Environment for the `medialens` CLI on an isolated home under `home` (made, with its settings
    file, when missing): MEDIALENS_HOME=home/home, DAGSTER_HOME=home/dagster_home. The default
    settings are the test suite's (extractive summaries: no LLM)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(home / "home"), DAGSTER_HOME=str(home / "dagster_home"))
    (home / "home").mkdir(parents=True, exist_ok=True)
    config = home / "home" / "medialens.yaml"
    if not config.exists():
        config.write_text(settings)
    return env


def medialens() -> str:
    """The `medialens` entry point of the running interpreter's venv (else the one on PATH)."""
    here = Path(sys.executable).parent / "medialens"
    return str(here) if here.exists() else shutil.which("medialens") or "medialens"


def analyse(env: Mapping[str, str], files: Iterable[Path]) -> dict[str, str]:
    """`medialens analyse FILES --json` in env; media file name -> key. Raises unless all are ok."""
    p = subprocess.run(
        [medialens(), "analyse", *map(str, files), "--json"], env=dict(env), capture_output=True, text=True
    )
    if p.returncode:
        raise RuntimeError(f"medialens analyse failed ({p.returncode}): {p.stderr[-3000:]}")
    return {r["source_name"]: r["key"] for r in json.loads(p.stdout)["results"]}


def cli_search(env: Mapping[str, str], query: str, limit: int = 10) -> list[dict[str, Any]]:
    """Hits of `medialens search QUERY --json --limit N` in env."""
    p = subprocess.run(
        [medialens(), "search", query, "--json", "--limit", str(limit)], env=dict(env), capture_output=True, text=True
    )
    if p.returncode:
        raise RuntimeError(f"medialens search {query!r} failed ({p.returncode}): {p.stderr[-2000:]}")
    hits: list[dict[str, Any]] = json.loads(p.stdout)["hits"]
    return hits


def keys_file(home: Path) -> Path:
    """Where `bench/ranking.py` and the test keep the media name -> key map of an analysed home."""
    return home / "eval_keys.json"


# ------------------------------------------------------------------------------------------- scoring


def rank_of(query: Query, hits: Sequence[Mapping[str, Any]], keys: Mapping[str, str]) -> int | None:
    """1-based rank of the first correct hit (rules in the module docstring), None when none is."""
    rank = 0
    for h in hits:
        if h.get("source") == "summary" and h.get("key") == keys[query.media]:
            continue
        rank += 1
        if correct(query, h, keys):
            return rank
    return None


def correct(query: Query, hit: Mapping[str, Any], keys: Mapping[str, str]) -> bool:
    if hit.get("key") != keys[query.media] or hit.get("source") != query.source:
        return False
    if query.t is None:
        return True
    start = hit.get("start")
    return start is not None and abs(float(start) - query.t) <= TIME_TOLERANCE_S


def _name(key: str, keys: Mapping[str, str]) -> str:
    return next((name for name, k in keys.items() if k == key), key)


def _brief(hit: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    start = hit.get("start")
    return {
        "media": _name(str(hit.get("key")), keys),
        "source": hit.get("source"),
        "start": None if start is None else round(float(start), 2),
        "text": str(hit.get("text") or "")[:80],
        "score": round(float(hit.get("score") or 0.0), 3),
    }


def _scores(ranks: Sequence[int | None]) -> dict[str, Any]:
    n = len(ranks)
    return {
        "queries": n,
        "top1": round(sum(r == 1 for r in ranks) / n, 3) if n else None,
        "mrr": round(sum(1 / r for r in ranks if r) / n, 3) if n else None,
    }


def evaluate(
    hits_for_query: Mapping[str, Sequence[Mapping[str, Any]]] | Callable[[str], Sequence[Mapping[str, Any]]],
    keys: Mapping[str, str],
    queries: Sequence[Query] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy and MRR over `queries` (default QUERIES), overall and per group, and the failures.

    `hits_for_query`: query text -> ranked hits `{key, source, start, end, text, score}` (a mapping or a
    function); `keys`: media file name -> key (`analyse`). A failure is a query whose answer is not
    first: with its rank (None: not in the hits), the expected answer and the first hit."""
    queries = QUERIES if queries is None else queries
    lookup = hits_for_query if callable(hits_for_query) else hits_for_query.__getitem__
    ranks: list[int | None] = []
    failures = []
    for q in queries:
        hits = list(lookup(q.text))
        rank = rank_of(q, hits, keys)
        ranks.append(rank)
        if rank != 1:
            ranked = [h for h in hits if not (h.get("source") == "summary" and h.get("key") == keys[q.media])]
            failures.append(
                {
                    "query": q.text,
                    "group": q.group,
                    "rank": rank,
                    "expected": {"media": q.media, "source": q.source, "t": q.t},
                    "top": _brief(ranked[0], keys) if ranked else None,
                }
            )
    by_group = {}
    for g in GROUPS:
        picked = [r for q, r in zip(queries, ranks, strict=True) if q.group == g]
        by_group[g] = _scores(picked)
    return {**_scores(ranks), "by_group": by_group, "failures": failures}


def as_rows(queries: Sequence[Query] | None = None) -> list[dict[str, Any]]:
    """The queries as plain dicts (for printing or a JSON dump)."""
    return [q._asdict() for q in (QUERIES if queries is None else queries)]
