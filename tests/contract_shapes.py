"""The `--json` shapes of docs/contract.md, and the checks that run the real `medialens` CLI against them.

Used twice: by tests/test_contract.py (pytest, on generated media) and by tests/contract_check.py (the
`make contract` script, on any files). Both run the installed `medialens` entry point in subprocesses
against a home of their own, exactly as a script would, and check shapes plus the rules the contract
states (absent analyses null not missing, exit codes, nothing stale after a clean analyse). Quality of
the analyses is not checked here.

A spec is a type (or tuple of types), `Nullable(spec)`, `OneOf(*values)`, `[item_spec]`,
`{key: spec}` (those keys must be present; extra keys are allowed: the contract may be extended) or
`MapOf(value_spec)` (an object with any keys). Only the standard library and PyYAML are used.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NUM = (int, float)
INT = int
STR = str
BOOL = bool


@dataclass(frozen=True)
class Nullable:
    """The value may be null; otherwise it matches `spec`."""

    spec: Any


@dataclass(frozen=True)
class OneOf:
    """The value is one of these exact values."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class MapOf:
    """An object with any keys, each value matching `spec`."""

    spec: Any


def check(value: Any, spec: Any, path: str = "$") -> list[str]:
    """Every way `value` differs from `spec`, each as `path: what`; empty when it matches."""
    errs: list[str] = []
    _check(value, spec, path, errs)
    return errs


def _type_name(spec: Any) -> str:
    if isinstance(spec, tuple):
        return "number" if spec == NUM else "|".join(t.__name__ for t in spec)
    return getattr(spec, "__name__", str(spec))


def _check(v: Any, spec: Any, path: str, errs: list[str]) -> None:
    if isinstance(spec, Nullable):
        if v is not None:
            _check(v, spec.spec, path, errs)
        return
    if v is None:
        errs.append(f"{path}: null where the contract wants {_describe(spec)}")
        return
    if isinstance(spec, OneOf):
        if v not in spec.values:
            errs.append(f"{path}: {v!r} is not one of {', '.join(map(repr, spec.values))}")
    elif isinstance(spec, MapOf):
        if not isinstance(v, dict):
            errs.append(f"{path}: want an object, got {type(v).__name__}")
            return
        for k, x in v.items():
            _check(x, spec.spec, f"{path}.{k}", errs)
    elif isinstance(spec, dict):
        if not isinstance(v, dict):
            errs.append(f"{path}: want an object, got {type(v).__name__}")
            return
        for k, s in spec.items():
            if k not in v:
                errs.append(f"{path}.{k}: missing (absent values must be null, never missing keys)")
            else:
                _check(v[k], s, f"{path}.{k}", errs)
    elif isinstance(spec, list):
        if not isinstance(v, list):
            errs.append(f"{path}: want a list, got {type(v).__name__}")
            return
        for i, x in enumerate(v[:200]):
            _check(x, spec[0], f"{path}[{i}]", errs)
    else:
        wanted = spec if isinstance(spec, tuple) else (spec,)
        if isinstance(v, bool) and bool not in wanted:
            errs.append(f"{path}: want {_type_name(spec)}, got bool")
        elif not isinstance(v, wanted):
            errs.append(f"{path}: want {_type_name(spec)}, got {type(v).__name__}")


def _describe(spec: Any) -> str:
    if isinstance(spec, dict | MapOf):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    if isinstance(spec, OneOf):
        return "one of " + ", ".join(map(repr, spec.values))
    return _type_name(spec)


# -- the shapes (docs/contract.md) -----------------------------------------------------------------
KINDS = ("video", "image", "audio")
STATUSES = ("ok", "rejected", "failed")
SEARCH_SOURCES = ("transcript", "ocr", "tags", "summary", "image")
# per-media assets; `medialens stale` and `reanalyse --asset` name these
PER_MEDIA_ASSETS = (
    "media_file",
    "keyframes",
    "audio_track",
    "ocr_text",
    "poses",
    "faces",
    "safety",
    "tags",
    "transcript",
    "summary",
    "search_index",
)

ANALYSE = {
    "results": [
        {
            "source_name": STR,
            "key": Nullable(STR),
            "status": OneOf(*STATUSES),
            "reason": Nullable(STR),
            "kind": Nullable(OneOf(*KINDS)),
            "duration_s": Nullable(NUM),
            "keyframes": Nullable(INT),
            "audio_s": Nullable(NUM),
            "seconds": Nullable(NUM),
        }
    ]
}

SUMMARY = {
    "title": STR,
    "summary": STR,
    "topics": [STR],
    "language": Nullable(STR),
    "method": STR,
    "note": Nullable(STR),
}
SEGMENT = {"start": NUM, "end": NUM, "text": STR}
OCR_LINE = {"text": STR, "first_t": NUM, "last_t": NUM}

REVIEW_DECISION = {"decision": OneOf("approve", "reject", "note"), "at": STR, "note": Nullable(STR)}
SHOW = {
    "key": STR,
    "source_name": STR,
    "kind": OneOf(*KINDS),
    "duration_s": Nullable(NUM),
    "status": STR,
    "media": {
        "container": Nullable(STR),
        "size_bytes": Nullable(INT),
        "width": Nullable(INT),
        "height": Nullable(INT),
        "fps": Nullable(NUM),
        "video_codec": Nullable(STR),
        "audio_codec": Nullable(STR),
        "sample_rate": Nullable(INT),
        "channels": Nullable(INT),
        "sha256": STR,
        "path": STR,
    },
    "keyframes": Nullable([{"t": NUM, "path": STR, "shot": INT, "sharpness": NUM}]),
    "audio": Nullable(
        {
            "path": Nullable(STR),
            "duration_s": Nullable(NUM),
            "sample_rate": Nullable(INT),
            "rms_dbfs": Nullable(NUM),
            "peak_dbfs": Nullable(NUM),
        }
    ),
    "transcript": Nullable(
        {"language": Nullable(STR), "language_probability": Nullable(NUM), "text": STR, "segments": [SEGMENT]}
    ),
    "ocr": Nullable({"lines": [OCR_LINE]}),
    "poses": Nullable([{"t": NUM, "persons": [{"box": [NUM], "score": NUM, "keypoints": [[NUM]]}]}]),
    "faces": Nullable([{"t": NUM, "box": [NUM], "score": NUM, "face_id": STR, "person_id": Nullable(STR)}]),
    "safety": Nullable(
        {
            "verdict": OneOf("safe", "review", "unsafe"),
            "reasons": [STR],
            "labels": [{"t": NUM, "label": STR, "score": NUM, "box": Nullable([NUM])}],
            "restraint_cues": [dict],
            "review": Nullable(REVIEW_DECISION),
        }
    ),
    "tags": Nullable([{"label": STR, "score": NUM, "frames": INT}]),
    "summary": Nullable(SUMMARY),
    "versions": MapOf(STR),
}

SEARCH = {
    "hits": [
        {
            "key": STR,
            "source": OneOf(*SEARCH_SOURCES),
            "start": Nullable(NUM),
            "end": Nullable(NUM),
            "text": STR,
            "score": NUM,
        }
    ],
    "counts": MapOf(INT),
}

PERSON = {"person_id": STR, "name": Nullable(STR), "media": [STR], "appearances": INT}
PEOPLE = {"persons": [PERSON]}
PEOPLE_SHOW = {
    "person_id": STR,
    "name": Nullable(STR),
    "media": [STR],
    "appearances": [{"person_id": STR, "face_id": STR, "media": STR, "t": NUM, "kf": INT, "box": [NUM]}],
    "dossier": {
        "person_id": STR,
        "name": Nullable(STR),
        "appearances": INT,
        "media": [
            {
                "key": STR,
                "source_name": Nullable(STR),
                "appearances": [{"t": NUM, "face_id": STR, "box": [NUM]}],
                "transcript": [SEGMENT],
                "ocr": [OCR_LINE],
                "safety": Nullable({"verdict": Nullable(STR), "labels": [{"t": NUM, "label": STR, "score": NUM}]}),
            }
        ],
        "seen_with": [{"person_id": STR, "same_keyframe": INT, "same_media": INT}],
        "summary": Nullable(SUMMARY),
    },
}

STALE = {
    "stale": [
        {
            "asset": OneOf(*PER_MEDIA_ASSETS),
            "partition": STR,
            "recorded_version": Nullable(STR),
            "current_version": STR,
            "reason": STR,
        }
    ]
}

REANALYSE = {
    "backfill_id": Nullable(STR),
    "backfill_ids": [STR],
    "partitions": [STR],
    "runs": INT,
    "status": STR,
}
REANALYSE_LAUNCHED = {
    **REANALYSE,
    "backfill_id": STR,
    "status": OneOf("REQUESTED"),
    "planned": [{"asset": OneOf(*PER_MEDIA_ASSETS), "partition": STR, "reason": STR}],
}

FORGET = {
    "what": OneOf("media", "person"),
    "id": STR,
    "files": [STR],
    "vectors": INT,
    "cache_entries": INT,
    "runs_deleted": INT,
    "face_rows": INT,
    "notes": [STR],
}

REVIEW_QUEUE = {
    "queue": [
        {
            "key": STR,
            "source_name": STR,
            "verdict": OneOf("review", "unsafe"),
            "reasons": [STR],
            "restraint_cues": [dict],
            "safety_version": Nullable(STR),
            "keyframes": [
                {
                    "kf": INT,
                    "t": NUM,
                    "path": Nullable(STR),
                    "labels": [{"label": STR, "score": NUM, "box": [NUM]}],
                }
            ],
            "review": Nullable({**REVIEW_DECISION, "decision": OneOf("note")}),
        }
    ]
}
REVIEW_RECORDED = {
    "recorded": {
        "key": STR,
        "decision": OneOf("approve", "reject", "note"),
        "note": Nullable(STR),
        "at": STR,
        "verdict": STR,
        "safety_version": Nullable(STR),
    },
    "review": Nullable(REVIEW_DECISION),
}

VISUAL_ANALYSES = ("ocr", "poses", "faces", "safety", "tags")


# -- running the CLI -------------------------------------------------------------------------------
@dataclass
class Call:
    """One finished `medialens` command: exit code, parsed stdout (None if not JSON), stderr."""

    args: tuple[str, ...]
    rc: int
    out: Any
    stdout: str
    stderr: str

    def where(self) -> str:
        """`medialens ARGS (rc N)`, plus the end of stderr: the context of an error message."""
        tail = self.stderr.strip().splitlines()[-3:]
        return f"`medialens {' '.join(self.args)}` (rc {self.rc}): " + " | ".join(tail)


@dataclass
class Session:
    """A `medialens` executable, the environment it runs in (its own MEDIALENS_HOME and DAGSTER_HOME)
    and what the steps learnt so far (the analyse results, the persons)."""

    ml: str
    env: dict[str, str]
    workdir: Path
    timeout_s: float = 900.0
    results: list[dict[str, Any]] = field(default_factory=list)
    persons: list[dict[str, Any]] = field(default_factory=list)
    analyse_errors: list[str] = field(default_factory=list)
    log: Callable[[str], None] = lambda _msg: None

    def run(self, *args: str, env: dict[str, str] | None = None) -> Call:
        """Run `medialens ARGS` and parse its stdout as JSON when it is JSON."""
        self.log(f"medialens {' '.join(args)}")
        p = subprocess.run(
            [self.ml, *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            cwd=self.workdir,
        )
        try:
            out = json.loads(p.stdout)
        except json.JSONDecodeError:
            out = None
        return Call(tuple(args), p.returncode, out, p.stdout, p.stderr)

    def json_call(self, errs: list[str], spec: Any, name: str, *args: str, rc: int = 0, **kw: Any) -> Any:
        """Run a `--json` command, record a wrong exit code, non-JSON output or shape errors in
        `errs` under `name`, and return the parsed output (None when there is none)."""
        call = self.run(*args, **kw)
        if call.rc != rc:
            errs.append(f"{name}: exit code {call.rc}, want {rc}: {call.where()}")
        if call.out is None:
            errs.append(f"{name}: stdout is not one JSON document: {call.stdout[-200:]!r} {call.where()}")
            return None
        errs.extend(check(call.out, spec, name))
        return call.out

    @property
    def ok_keys(self) -> list[str]:
        """Keys of the files `analyse` reported ok, in command order, without repeats."""
        return list(dict.fromkeys(r["key"] for r in self.results if r.get("status") == "ok" and r.get("key")))


def make_session(
    ml: str, workdir: Path, config_text: str | None = None, base_env: dict[str, str] | None = None
) -> Session:
    """A session with a fresh home under `workdir` (MEDIALENS_HOME, DAGSTER_HOME, and medialens.yaml
    when `config_text` is given); variables of another home are dropped from the environment."""
    env = {
        k: v
        for k, v in (base_env if base_env is not None else os.environ).items()
        if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))
    }
    home, dagster_home = workdir / "home", workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    dagster_home.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        (home / "medialens.yaml").write_text(config_text)
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    return Session(ml=ml, env=env, workdir=workdir)


# -- the steps -------------------------------------------------------------------------------------
def check_analyse(s: Session, files: Iterable[str | Path]) -> list[str]:
    """`analyse FILE... --json`: the shape, one result per file, the exit code rule (0 only when
    every file is ok), reasons for every file that is not ok."""
    errs: list[str] = []
    paths = [str(f) for f in files]
    names = [Path(f).name for f in paths]
    call = s.run("analyse", *paths, "--json")
    if call.out is None:
        s.analyse_errors = [f"analyse: stdout is not one JSON document: {call.where()}"]
        return s.analyse_errors
    errs += check(call.out, ANALYSE, "analyse")
    s.results = [r for r in call.out.get("results", []) if isinstance(r, dict)]
    if sorted(str(r.get("source_name")) for r in s.results) != sorted(names):
        errs.append(f"analyse: results name {[r.get('source_name') for r in s.results]}, files were {names}")
    all_ok = bool(s.results) and all(r.get("status") == "ok" for r in s.results)
    if call.rc != (0 if all_ok else 1):
        errs.append(f"analyse: exit code {call.rc} but {'every' if all_ok else 'not every'} file is ok")
    for r in s.results:
        if r.get("status") != "ok" and not r.get("reason"):
            errs.append(f"analyse: {r.get('source_name')} is {r.get('status')} without a reason")
        if r.get("status") == "ok" and not r.get("key"):
            errs.append(f"analyse: {r.get('source_name')} is ok without a key")
    s.analyse_errors = errs
    return errs


def check_show(s: Session) -> list[str]:
    """`show KEY --json` of every ok file: the shape and the null rules per kind (audio has no
    keyframes or visual analyses; images have no transcript); an unknown key exits 1."""
    errs: list[str] = []
    for r in s.results:
        if r.get("status") != "ok" or not r.get("key"):
            continue
        name = f"show[{r['source_name']}]"
        obj = s.json_call(errs, SHOW, name, "show", r["key"], "--json")
        if not isinstance(obj, dict):
            continue
        if obj.get("key") != r["key"] or obj.get("kind") != r.get("kind"):
            errs.append(
                f"{name}: key/kind {obj.get('key')}/{obj.get('kind')} differ from analyse's {r['key']}/{r.get('kind')}"
            )
        kind = obj.get("kind")
        if kind == "audio":
            errs += [
                f"{name}.{k}: {obj.get(k)!r} for audio, want null"
                for k in ("keyframes", *VISUAL_ANALYSES)
                if obj.get(k) is not None
            ]
        if kind in ("video", "image") and not obj.get("keyframes"):
            errs.append(f"{name}.keyframes: none for a {kind}")
        if kind == "image" and obj.get("transcript") is not None:
            errs.append(f"{name}.transcript: an image has no transcript, want null")
        if kind in ("video", "image"):
            errs += [f"{name}.{k}: null for an analysed {kind}" for k in VISUAL_ANALYSES if obj.get(k) is None]
        if obj.get("summary") is None:
            errs.append(f"{name}.summary: null for an analysed file")
        for kf in obj.get("keyframes") or []:
            if isinstance(kf, dict) and isinstance(kf.get("path"), str) and not Path(kf["path"]).is_file():
                errs.append(f"{name}.keyframes: {kf['path']} does not exist")
                break
        for pose in obj.get("poses") or []:
            for person in pose.get("persons", []) if isinstance(pose, dict) else []:
                if any(len(kp) != 3 for kp in person.get("keypoints", [])):
                    errs.append(f"{name}.poses: keypoints must be [x, y, visibility]")
                    break
        versions = obj.get("versions") or {}
        if "media_file" not in versions:
            errs.append(f"{name}.versions: no media_file version")
    call = s.run("show", "nothing-0123456789", "--json")
    if call.rc != 1:
        errs.append(f"show of an unknown key: exit code {call.rc}, want 1")
    return errs


def check_search(s: Session) -> list[str]:
    """`search QUERY --json` (plain, and `--kind transcript --media KEY --limit 3` on a file with
    sound): the hit shape; hits name analysed media; the filters and the limit are honoured; an empty
    query exits 2."""
    errs: list[str] = []
    keys = s.ok_keys
    out = s.json_call(errs, SEARCH, "search", "search", "crane offline at the pier", "--json")
    hits = (out or {}).get("hits", [])
    if out is not None and keys and not hits:
        errs.append("search: no hits at all over the analysed files")
    strangers = {h.get("key") for h in hits if isinstance(h, dict)} - set(keys)
    if strangers:
        errs.append(f"search: hits in media that were not analysed: {sorted(map(str, strangers))}")
    spoken = [r["key"] for r in s.results if r.get("status") == "ok" and r.get("kind") in ("video", "audio")]
    if spoken:
        key = spoken[0]
        one = s.json_call(errs, SEARCH, "search --kind transcript --media KEY", "search", "the", "--kind", "transcript",
                          "--media", key, "--limit", "3", "--json")  # fmt: skip
        for h in (one or {}).get("hits", []):
            if h.get("key") != key or h.get("source") != "transcript":
                errs.append(f"search --kind transcript --media {key}: hit {h.get('key')}/{h.get('source')}")
                break
        if len((one or {}).get("hits", [])) > 3:
            errs.append("search --limit 3: more than 3 hits")
    call = s.run("search", " ", "--json")
    if call.rc != 2:
        errs.append(f"search of an empty query: exit code {call.rc}, want 2")
    return errs


def check_people(s: Session) -> list[str]:
    """`people --json`, `people show ID --json`, `people name ID NAME --json`: shapes; the name comes
    back; an unknown id exits 1."""
    errs: list[str] = []
    out = s.json_call(errs, PEOPLE, "people", "people", "--json")
    s.persons = list((out or {}).get("persons", []))
    known = set(s.ok_keys)
    for p in s.persons:
        if not set(p.get("media") or []) <= known:
            errs.append(f"people: {p.get('person_id')} names media that were not analysed: {p.get('media')}")
    if not s.persons:
        return errs
    pid = s.persons[0]["person_id"]
    detail = s.json_call(errs, PEOPLE_SHOW, "people show", "people", "show", pid, "--json")
    faces = detail.get("appearances") if isinstance(detail, dict) else None
    if isinstance(faces, list) and len(faces) != s.persons[0].get("appearances"):
        errs.append(f"people show {pid}: {len(faces)} appearances, `people` says {s.persons[0].get('appearances')}")
    named = s.json_call(errs, PEOPLE, "people name", "people", "name", pid, "Contract Person", "--json")
    mine = [p for p in (named or {}).get("persons", []) if p.get("person_id") == pid]
    if named is not None and (not mine or mine[0].get("name") != "Contract Person"):
        errs.append(f"people name {pid}: the name is not in its output")
    call = s.run("people", "show", "p-nobody00000", "--json")
    if call.rc != 1:
        errs.append(f"people show of an unknown id: exit code {call.rc}, want 1")
    return errs


def changed_config(s: Session, workdir: Path) -> Path:
    """A copy of the session's settings with `tags.top_k` changed: makes `tags` and its dependants stale."""
    import yaml

    current = Path(s.env.get("MEDIALENS_CONFIG") or Path(s.env["MEDIALENS_HOME"]) / "medialens.yaml")
    cfg = (yaml.safe_load(current.read_text()) if current.exists() else None) or {}
    tags = dict(cfg.get("tags") or {})
    tags["top_k"] = int(tags.get("top_k", 5)) + 1
    cfg["tags"] = tags
    out = workdir / "medialens-changed.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def check_stale_and_reanalyse(s: Session) -> list[str]:
    """`stale --json` is empty for cleanly analysed files; after a settings change it lists them
    with both versions; `reanalyse --json` then launches (status REQUESTED, without --wait), and
    says "nothing stale" under the unchanged settings; an unknown asset exits 2."""
    errs: list[str] = []
    keys = s.ok_keys
    out = s.json_call(errs, STALE, "stale", "stale", "--json")
    left = [r for r in (out or {}).get("stale", []) if r.get("partition") in keys]
    if left:
        errs.append(f"stale: {len(left)} rows for files analysed just now, e.g. {left[0]}")
    nothing = s.json_call(errs, REANALYSE, "reanalyse (nothing stale)", "reanalyse", "--all-stale", "--json")
    if nothing is not None and (nothing.get("backfill_id") is not None or nothing.get("partitions")):
        errs.append(f"reanalyse with nothing stale launched something: {nothing}")
    if not keys:
        return errs
    env = {**s.env, "MEDIALENS_CONFIG": str(changed_config(s, s.workdir))}
    stale = s.json_call(errs, STALE, "stale (tags changed)", "stale", "--json", env=env)
    rows = [r for r in (stale or {}).get("stale", []) if r.get("asset") == "tags"]
    if stale is not None and sorted(r.get("partition") for r in rows) != sorted(keys):
        errs.append(
            f"stale after a tags change: tags stale for {sorted(r.get('partition') for r in rows)}, want {sorted(keys)}"
        )
    if any(r.get("recorded_version") == r.get("current_version") for r in rows):
        errs.append("stale after a tags change: a row whose recorded and current versions are equal")
    launched = s.json_call(errs, REANALYSE_LAUNCHED, "reanalyse", "reanalyse", "--asset", "tags", "--max-per-run", "2",
                           "--json", env=env)  # fmt: skip
    if launched is not None and sorted(launched.get("partitions") or []) != sorted(keys):
        errs.append(f"reanalyse --asset tags: partitions {launched.get('partitions')}, want {sorted(keys)}")
    call = s.run("reanalyse", "--asset", "no_such_asset", "--json")
    if call.rc != 2:
        errs.append(f"reanalyse of an unknown asset: exit code {call.rc}, want 2")
    return errs


def check_review(s: Session) -> list[str]:
    """`review --json` and `review KEY approve --json`: shapes; an approved media leaves the queue
    and `show` has the decision; an unknown key exits 1, a decision on a `safe` media exits 1, an
    unknown decision exits 2. Records a decision: run it after the read-only steps."""
    errs: list[str] = []
    out = s.json_call(errs, REVIEW_QUEUE, "review", "review", "--json")
    queue = (out or {}).get("queue", [])
    known = set(s.ok_keys)
    strangers = {i.get("key") for i in queue if isinstance(i, dict)} - known
    if strangers:
        errs.append(f"review: queue names media that were not analysed: {sorted(map(str, strangers))}")
    if queue and isinstance(queue[0], dict) and queue[0].get("key") in known:
        key = queue[0]["key"]
        done = s.json_call(errs, REVIEW_RECORDED, "review KEY approve", "review", key, "approve", "--json")
        if done is not None and (done.get("review") or {}).get("decision") != "approve":
            errs.append(f"review {key} approve: `review` is {done.get('review')}, want the approval")
        after = s.json_call(errs, REVIEW_QUEUE, "review (after approve)", "review", "--json")
        if after is not None and any(i.get("key") == key for i in after.get("queue", [])):
            errs.append(f"review {key} approve: still in the queue")
        shown = s.run("show", key, "--json").out or {}
        if ((shown.get("safety") or {}).get("review") or {}).get("decision") != "approve":
            errs.append(f"review {key} approve: `show` has safety.review {(shown.get('safety') or {}).get('review')}")
    queued = {i.get("key") for i in queue if isinstance(i, dict)}
    visual = [r["key"] for r in s.results if r.get("status") == "ok" and r.get("kind") in ("video", "image")]
    for key in [k for k in visual if k not in queued][:1]:
        verdict = ((s.run("show", key, "--json").out or {}).get("safety") or {}).get("verdict")
        if verdict == "safe" and (rc := s.run("review", key, "approve", "--json").rc) != 1:
            errs.append(f"review of a safe media: exit code {rc}, want 1")
    call = s.run("review", "nothing-0123456789", "approve", "--json")
    if call.rc != 1:
        errs.append(f"review of an unknown media: exit code {call.rc}, want 1")
    call = s.run("review", "nothing-0123456789", "maybe", "--json")
    if call.rc != 2:
        errs.append(f"review with an unknown decision: exit code {call.rc}, want 2")
    return errs


def check_forget(s: Session) -> list[str]:
    """`forget person ID --json` and `forget media KEY --json`: shapes; the media is gone afterwards
    (`show` exits 1); an unknown id exits 1. Changes the library: run it last."""
    errs: list[str] = []
    if s.persons:
        pid = s.persons[-1]["person_id"]
        out = s.json_call(errs, FORGET, "forget person", "forget", "person", pid, "--json")
        if out is not None and (out.get("what"), out.get("id")) != ("person", pid):
            errs.append(f"forget person {pid}: what/id {out.get('what')}/{out.get('id')}")
        after = s.run("people", "--json")
        if after.out and any(p.get("person_id") == pid for p in after.out.get("persons", [])):
            errs.append(f"forget person {pid}: still listed by `people`")
    keys = s.ok_keys
    if keys:
        key = keys[-1]
        out = s.json_call(errs, FORGET, "forget media", "forget", "media", key, "--json")
        if out is not None and ((out.get("what"), out.get("id")) != ("media", key) or not out.get("files")):
            errs.append(
                f"forget media {key}: what/id {out.get('what')}/{out.get('id')}, {len(out.get('files') or [])} files"
            )
        if s.run("show", key, "--json").rc != 1:
            errs.append(f"forget media {key}: `show` still knows it")
    call = s.run("forget", "media", "nothing-0123456789", "--json")
    if call.rc != 1:
        errs.append(f"forget of an unknown media: exit code {call.rc}, want 1")
    return errs


STEPS: tuple[tuple[str, Callable[[Session], list[str]]], ...] = (
    ("show", check_show),
    ("search", check_search),
    ("people", check_people),
    ("stale/reanalyse", check_stale_and_reanalyse),
    ("review", check_review),
    ("forget", check_forget),
)
"""The steps after `check_analyse`, in the order they must run (forget changes the library)."""
