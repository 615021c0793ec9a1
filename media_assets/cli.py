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
    # Text search arrives with the transcript/OCR/summary assets and their text index; until they
    # exist nothing is indexed, and we say so rather than pretend.
    _err("no text index yet: transcripts, OCR and summaries are not analysed by this version")
    if args.json:
        _emit({"hits": []})
    return 0


def cmd_people(args: argparse.Namespace) -> int:
    _err("no person dossiers yet: faces are not analysed by this version")
    if args.json:
        _emit({"persons": []})
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
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)

    pe = sub.add_parser("people", help="person dossiers")
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
