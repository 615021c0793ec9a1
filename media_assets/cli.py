"""`medialens`: the command line for scripts and headless use (DESIGN.md, "Contract").

Every command with `--json` prints exactly one JSON document on stdout; progress and warnings go
to stderr. Exit code 0 only when everything asked for succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from media_assets.config import ConfigError, Paths


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _load_defs() -> Any:
    warnings.filterwarnings("ignore")  # Dagster beta/preview warnings are for developers, not users
    from media_assets.definitions import defs

    return defs


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def cmd_analyse(args: argparse.Namespace) -> int:
    from media_assets.headless import analyse

    paths = Paths.from_env()
    defs = _load_defs()
    results = analyse(args.paths, defs, paths, progress=_err)
    if any(r.status == "ok" for r in results):
        from media_assets.headless import refresh_people

        people = refresh_people(defs, paths)
        _err(f"person dossiers: {people['persons']} persons ({people['unassigned']} faces unassigned)")
    if args.json:
        _emit({"results": [r.as_dict() for r in results]})
    else:
        rows = [
            [
                r.source_name,
                r.key or "-",
                r.kind or "-",
                _num(r.duration_s),
                _num(r.keyframes, "{:d}"),
                _num(r.audio_s),
                r.status,
            ]
            for r in results
        ]
        print(_table(rows, ["file", "key", "kind", "duration s", "keyframes", "audio s", "status"]))
        for r in results:
            if r.status != "ok" or r.reason:
                print(f"  {r.status}: {r.reason}")
        print(f"\nresults: {paths.store}  (medialens show KEY --json)")
    return 0 if results and all(r.status == "ok" for r in results) else 1


def cmd_show(args: argparse.Namespace) -> int:
    from media_assets.report import UnknownMedia, show
    from resources.store import MediaStore

    store = MediaStore(root=str(Paths.from_env().store))
    try:
        obj = show(store, args.key)
    except UnknownMedia:
        _err(f"no media with key {args.key!r} (list keys with `medialens stale` or the Dagster UI)")
        return 1
    if args.json:
        _emit(obj)
        return 0
    print(f"{obj['key']}  ({obj['source_name']}, {obj['kind']}, {_num(obj['duration_s'])} s)")
    media = obj.get("media") or {}
    if media:
        print(
            f"  {media.get('container')}  {media.get('width') or '-'}x{media.get('height') or '-'}  "
            f"video={media.get('video_codec')} audio={media.get('audio_codec')}  stored at {media.get('path')}"
        )
    if obj["keyframes"] is not None:
        print(f"  keyframes: {len(obj['keyframes'])}")
        for kf in obj["keyframes"][:20]:
            print(f"    t={kf['t']:8.2f}  {kf['path']}")
    if obj.get("audio"):
        print(f"  audio: {obj['audio']['duration_s']} s at {obj['audio']['sample_rate']} Hz: {obj['audio']['path']}")
    missing = [k for k in ("transcript", "ocr", "poses", "faces", "safety", "tags", "summary") if obj[k] is None]
    if missing:
        print(f"  not analysed: {', '.join(missing)}")
    return 0


def cmd_stale(args: argparse.Namespace) -> int:
    from media_assets.headless import dagster_instance
    from media_assets.staleness import find_stale

    defs = _load_defs()
    instance = dagster_instance(Paths.from_env())
    rows = find_stale(instance, defs, [args.asset] if args.asset else None)
    if args.json:
        _emit({"stale": [r.as_dict() for r in rows]})
        return 0
    if not rows:
        print("nothing is stale: every partition was analysed with the current version of every asset")
        return 0
    print(
        _table(
            [[r.asset, r.partition, r.recorded_version or "-", r.current_version, r.reason] for r in rows],
            ["asset", "partition", "recorded", "current", "why"],
        )
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from media_assets.search import search
    from resources import build_resources

    paths = Paths.from_env()
    qdrant = build_resources(paths)["qdrant"]
    try:
        hits = search(qdrant, args.query, kind=args.kind, media=args.media, limit=args.limit)
    except ValueError as exc:
        _err(str(exc))
        return 2
    if args.json:
        _emit({"hits": hits})
        return 0
    if not hits:
        print("no matches (is anything analysed? `medialens analyse FILE` indexes it)")
        return 0

    def when(h: dict[str, Any]) -> str:
        if h["start"] is None:
            return "-"
        return f"{h['start']:.1f}-{h['end']:.1f} s" if h["end"] is not None else f"{h['start']:.1f} s"

    rows = [[h["key"], when(h), h["source"], h["text"][:70], f"{h['score']:.3f}"] for h in hits]
    print(_table(rows, ["media", "time", "source", "snippet", "score"]))
    return 0


def cmd_people(args: argparse.Namespace) -> int:
    from media_assets.analysis import people as persons
    from media_assets.headless import refresh_people
    from media_assets.people import append_decision

    paths = Paths.from_env()
    defs = _load_defs()
    store = defs.resources["store"]
    want = {"show": 1, "name": 2, "merge": 2, "split": 2, None: 0}[args.action]
    if len(args.args) != want:
        _err(f"people {args.action or ''}: expected {want} argument(s), got {len(args.args)}")
        return 2
    if args.action == "name":
        append_decision(store, persons.Name(args.args[0], args.args[1]))
    elif args.action == "merge":
        append_decision(store, persons.Merge(args.args[0], args.args[1]))
    elif args.action == "split":
        append_decision(store, persons.Split(args.args[0], args.args[1]))
    manifest = refresh_people(defs, paths)
    rows = store.read_table(manifest["tables"]["persons"]).to_pylist()
    people = [
        {"person_id": r["person_id"], "name": r["name"], "media": r["media"], "appearances": r["count"]} for r in rows
    ]
    known = {p["person_id"] for p in people}
    if args.action and args.args[0] not in known and args.action != "merge":
        _err(f"no person {args.args[0]!r} (list them with `medialens people`)")
        return 1
    if args.action == "show":
        pid = args.args[0]
        apps = [r for r in store.read_table(manifest["tables"]["appearances"]).to_pylist() if r["person_id"] == pid]
        person = next(p for p in people if p["person_id"] == pid)
        if args.json:
            _emit({**person, "appearances": apps})
        else:
            print(
                f"{pid}  {person['name'] or '(unnamed)'}  {person['appearances']} faces in {len(person['media'])} media"
            )
            print(_table([[a["media"], f"{a['t']:.1f}", a["face_id"]] for a in apps], ["media", "t s", "face"]))
        return 0
    if args.json:
        _emit({"persons": people})
    elif not people:
        print("no persons yet: analyse media with faces first")
    else:
        print(
            _table(
                [[p["person_id"], p["name"] or "-", str(p["appearances"]), " ".join(p["media"])] for p in people],
                ["person", "name", "faces", "media"],
            )
        )
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from media_assets.samples import generate_samples, require_tools

    require_tools()
    out = Path(args.out_dir)
    files = generate_samples(out)
    for f in files:
        print(f)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from media_assets.samples import generate_samples, require_tools

    paths = Paths.from_env()
    require_tools()
    samples_dir = paths.home / "samples"
    _err(f"generating sample media in {samples_dir} ...")
    files = generate_samples(samples_dir)
    rc = cmd_analyse(argparse.Namespace(paths=[str(f) for f in files], json=False))
    print(
        "\nNext:\n"
        "  .venv/bin/medialens show KEY            everything known about one file (--json for scripts)\n"
        "  .venv/bin/medialens stale               what an upgraded model or setting made stale\n"
        "  make dev                                Dagster UI on http://127.0.0.1:3000; drop files into "
        f"{paths.inbox}"
    )
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medialens", description="Offline AI media analysis on Dagster.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyse", aliases=["analyze"], help="analyse files or folders now, in this process")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_analyse)

    s = sub.add_parser("show", help="everything known about one media file")
    s.add_argument("key")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    st = sub.add_parser("stale", help="partitions analysed with an older model version (or never)")
    st.add_argument("--asset")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stale)

    se = sub.add_parser("search", help="search transcripts, OCR, tags and summaries")
    se.add_argument("query")
    se.add_argument("--kind", choices=["transcript", "ocr", "tags", "summary"])
    se.add_argument("--media", help="only this media key")
    se.add_argument("--limit", type=int, default=10)
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)

    pe = sub.add_parser("people", help="person dossiers: list, show ID, name ID NAME, merge A B, split ID FACE_ID")
    pe.add_argument("action", nargs="?", choices=["show", "name", "merge", "split"])
    pe.add_argument("args", nargs="*")
    pe.add_argument("--json", action="store_true")
    pe.set_defaults(func=cmd_people)

    sa = sub.add_parser("samples", help="generate the sample media set into a folder")
    sa.add_argument("out_dir")
    sa.set_defaults(func=cmd_samples)

    d = sub.add_parser("demo", help="generate sample media and analyse them (what `make demo` runs)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        rc = 2
    except KeyboardInterrupt:
        rc = 130
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
