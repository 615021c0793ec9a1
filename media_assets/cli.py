"""`medialens`: the command line for scripts and headless use (docs/contract.md).

Every command with `--json` prints exactly one JSON document on stdout; progress and warnings go
to stderr. Exit code 0 only when everything asked for succeeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from media_assets.plumbing.config import ConfigError, Paths


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


def _finish_interrupted_forgets(defs: Any, paths: Paths) -> None:
    """A forget that was killed half-way is finished before anything is analysed, so nothing it
    was deleting can come back through this command (media_assets/service/forget.py journals)."""
    from media_assets.service import forget
    from media_assets.service.headless import dagster_instance, refresh_people

    if not forget.pending_forgets(defs.resources["store"]):
        return
    res = defs.resources
    cache = res["inference_cache"].process_config_and_initialize()
    for done in forget.resume_unfinished(
        dagster_instance(paths), res["store"], res["qdrant"], cache, lambda: refresh_people(defs, paths)
    ):
        _err(f"finished an interrupted forget of {done.what} {done.id}")


def cmd_analyse(args: argparse.Namespace) -> int:
    from media_assets.service.headless import analyse

    paths = Paths.from_env()
    defs = _load_defs()
    defs.resources["store"].sweep_scratch()  # what killed commands left half-written goes
    _finish_interrupted_forgets(defs, paths)
    results = analyse(args.paths, defs, paths, progress=_err)
    if any(r.status == "ok" for r in results):
        from media_assets.service.headless import refresh_people

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
    from media_assets.service.show import UnknownMedia, show
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
    from media_assets.plumbing.staleness import find_stale
    from media_assets.service.headless import dagster_instance

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


def cmd_library(args: argparse.Namespace) -> int:
    """`library`: every media with kind, duration, status and staleness (the UI's Library page)."""
    from media_assets.service.headless import dagster_instance
    from media_assets.service.library import library, totals

    defs = _load_defs()
    rows = library(defs.resources["store"], dagster_instance(Paths.from_env()), defs)
    rows = [
        r
        for r in rows
        if (args.kind is None or r["kind"] == args.kind)
        and (args.status is None or r["status"] == args.status)
        and (not args.stale or r["stale_assets"])
    ]
    if args.json:
        _emit({"media": rows, "totals": totals(rows)})
        return 0
    if not rows:
        print("no media" + (" match" if args.kind or args.status or args.stale else " yet: `medialens analyse PATH`"))
        return 0
    table = [
        [
            r["source_name"] or "-",
            r["kind"] or "-",
            _num(r["duration_s"]),
            r["status"],
            ",".join(r["stale_assets"]) or "-",
            r["added"] or "-",
            r["key"],
        ]
        for r in rows
    ]
    print(_table(table, ["name", "kind", "seconds", "status", "stale", "added", "key"]))
    return 0


def cmd_reanalyse(args: argparse.Namespace) -> int:
    from media_assets.service import reanalyse as ra
    from media_assets.service.headless import dagster_instance

    defs = _load_defs()
    store = defs.resources["store"]
    instance = dagster_instance(Paths.from_env())
    try:
        plan = ra.plan(instance, defs, args.asset, args.all_stale)
    except ra.UnknownAsset as exc:
        _err(str(exc))
        return 2
    for s in plan.skipped:
        _err(f"skipped {s.asset} of {s.partition}: an input of it was never materialised (analyse the file again)")
    planned = [i.as_dict() for i in plan.items]
    if not plan.items:
        if args.json:
            _emit({"backfill_id": None, "backfill_ids": [], "partitions": [], "runs": 0, "status": "nothing stale"})
        else:
            print("nothing stale: every partition of those assets was analysed with the current version")
        return 0
    group = os.urandom(4).hex()
    report_file = str(ra.report_path(store, group))
    before = ra.snapshot(instance, store, plan)
    ids = ra.launch(instance, defs, plan, args.max_per_run, f"medialens reanalyse {' '.join(plan.assets)}", group,
                    report_file)  # fmt: skip
    runs = ra.expected_runs(instance, plan, args.max_per_run)
    _err(f"launched {len(ids)} backfill(s) for {len(plan.partitions)} partition(s) of {', '.join(plan.assets)} "
         f"(~{runs} run(s) of at most {args.max_per_run} partitions)")  # fmt: skip
    # DESIGN contract: backfill_id, partitions, runs, status; each chunk of N partitions is its own
    # backfill (see media_assets/service/reanalyse.py), so backfill_id is the first and backfill_ids all of them
    out: dict[str, Any] = {
        "backfill_id": ids[0],
        "backfill_ids": ids,
        "partitions": list(plan.partitions),
        "runs": runs,
        "status": "REQUESTED",
        "planned": planned,
    }
    rc = 0
    if args.wait:
        try:
            statuses = ra.wait(instance, ids, progress=_err, timeout=args.timeout, max_per_run=args.max_per_run)
        except (TimeoutError, RuntimeError) as exc:
            _err(f"{exc}; the backfills go on under a dagster-daemon (`make dev`)")
            return 1
        report = ra.build_report(instance, defs, store, plan, before, group, ids, statuses)
        ra.write_report(store, group, report)
        if any(a["still_stale"] for a in report["assets"].values()):
            _err("some partitions are still stale: a running daemon may have loaded the code location before the "
                 "change; reload it (UI: Deployment > Reload) and run reanalyse again")  # fmt: skip
        out["runs"] = report["runs"]
        out["report"] = {**report, "path": report_file}
        rc = 0 if all(s == "COMPLETED_SUCCESS" for s in statuses.values()) else 1
        out["status"] = next((s for s in statuses.values() if s != "COMPLETED_SUCCESS"), "COMPLETED_SUCCESS")
    if args.json:
        _emit(out)
        return rc
    print(_table([[i.asset, i.partition, i.reason] for i in plan.items], ["asset", "partition", "why"]))
    print(f"\nbackfills: {' '.join(ids)}  (tag {ra.GROUP_TAG}={group}; Dagster UI > Backfills)")
    if not args.wait:
        print("they run while a dagster-daemon runs (`make dev` starts one), or pass --wait")
        return 0
    for asset, a in out["report"]["assets"].items():
        versions = ", ".join(a["versions"]) or "-"
        deltas = ", ".join(f"{k} {v:+d}" for k, v in a["count_deltas"].items() if v) or "no count changes"
        lines = f"; OCR lines +{a['lines_added']} -{a['lines_removed']}" if "lines_added" in a else ""
        print(f"  {asset}: {a['redone']}/{a['planned']} redone ({versions}); {deltas}{lines}")
    print(f"report: {report_file}")
    return rc


def cmd_search(args: argparse.Namespace) -> int:
    from media_assets.service.search import Filters, media_of_person, search_moments
    from resources import build_resources

    paths = Paths.from_env()
    resources = build_resources(paths)
    try:
        person_media = media_of_person(resources["store"], args.person) if args.person else None
    except ValueError as exc:
        _err(str(exc))
        return 1
    filters = Filters(
        kind=args.kind,
        media=[args.media] if args.media else (),
        media_kind=args.media_kind,
        language=args.language,
        person_media=person_media,
        time_from=args.time_from,
        time_to=args.time_to,
    )
    try:
        result = search_moments(resources["qdrant"], args.query, filters, limit=args.limit)
    except ValueError as exc:
        _err(str(exc))
        return 2
    except OSError as exc:  # Qdrant server unreachable, embedded store locked by a stuck process
        _err(f"search: {exc}")
        return 1
    hits = result["hits"]
    if args.json:
        _emit(result)
        return 0
    if not hits:
        print("no matches (is anything analysed? `medialens analyse FILE` indexes it)")
        return 0

    def when(h: dict[str, Any]) -> str:
        if h["start"] is None:
            return "-"
        return f"{h['start']:.1f}-{h['end']:.1f} s" if h["end"] is not None else f"{h['start']:.1f} s"

    rows = [[h["key"], when(h), h["source"], h["text"][:70], f"{h['score']:.4f}"] for h in hits]
    print(_table(rows, ["media", "time", "source", "snippet", "score"]))
    print("moments considered: " + ", ".join(f"{k} {n}" for k, n in sorted(result["counts"].items())))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The results UI: `streamlit run` in a child process with this environment (MEDIALENS_HOME,
    QDRANT_URL), so Streamlit is imported only by this command; its exit code is ours."""
    import subprocess

    from media_assets.ui import APP

    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(args.port)]
    cmd += ["--server.address", args.host, "--server.headless", "true"]
    # medialens runs offline and sends nothing anywhere; and its users have no Streamlit app to deploy
    cmd += ["--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    _err(f"results UI on http://{args.host}:{args.port}  (Ctrl-C stops it)")
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches Streamlit too; SIGTERM (see `main`) only us: pass it on
        proc.terminate()
        return proc.wait()


def cmd_people(args: argparse.Namespace) -> int:
    """A thin printer over `service/people.py` (the UI's People page calls the same functions)."""
    from media_assets.service import people as people_service

    paths = Paths.from_env()
    defs = _load_defs()
    want = {"show": 1, "name": 2, "merge": 2, "split": 2, None: 0}[args.action]
    if len(args.args) != want:
        _err(f"people {args.action or ''}: expected {want} argument(s), got {len(args.args)}")
        return 2
    try:
        if args.action == "show":
            return _print_dossier(people_service.dossier(defs, paths, args.args[0]), args.json)
        if args.action == "name":
            people = people_service.name_person(defs, paths, args.args[0], args.args[1])
        elif args.action == "merge":
            people = people_service.merge_people(defs, paths, args.args[0], args.args[1])
        elif args.action == "split":
            people = people_service.split_person(defs, paths, args.args[0], args.args[1])
        else:
            people = people_service.list_people(defs, paths)
    except (people_service.UnknownPerson, ValueError) as exc:  # refused before the decision log
        _err(str(exc))
        return 1
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


def _print_dossier(shown: dict[str, Any], as_json: bool) -> int:
    """`people show ID`: the object `service.people.dossier` returns, as JSON or as text."""
    if as_json:
        _emit(shown)
        return 0
    dossier = shown["dossier"]
    faces = len(shown["appearances"])
    print(f"{shown['person_id']}  {shown['name'] or '(unnamed)'}  {faces} faces in {len(shown['media'])} media")
    if dossier["summary"]:
        print(f"\n{dossier['summary']['title']}: {dossier['summary']['summary']}")
    for m in dossier["media"]:
        times = ", ".join(f"{a['t']:.1f}" for a in m["appearances"])
        print(f"\n{m['key']} ({m['source_name']}): seen at {times} s")
        for seg in m["transcript"]:
            print(f"  said  {seg['start']:7.1f}  {seg['text']}")
        for line in m["ocr"]:
            print(f"  shown {line['first_t']:7.1f}  {line['text']}")
        if m["safety"] and m["safety"]["verdict"] != "safe":
            print(f"  safety: {m['safety']['verdict']} {[x['label'] for x in m['safety']['labels']]}")
    if dossier["seen_with"]:
        print(
            "\nseen with: "
            + ", ".join(f"{c['person_id']} ({c['same_keyframe']} keyframes)" for c in dossier["seen_with"])
        )
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from media_assets.service import forget
    from media_assets.service.headless import dagster_instance, refresh_people

    paths = Paths.from_env()
    defs = _load_defs()
    res = defs.resources
    res["store"].sweep_scratch()  # half-written files of killed processes may hold its data too
    try:
        if args.what == "person":  # the same call as the UI's People page
            from media_assets.service.people import forget as forget_person

            done = forget_person(defs, paths, args.id)
        else:
            done = forget.forget_media(
                args.id,
                dagster_instance(paths),
                res["store"],
                res["qdrant"],
                res["inference_cache"].process_config_and_initialize(),  # resolves REDIS_URL outside a run
                lambda: refresh_people(defs, paths),
            )
    except forget.NothingToForget:
        _err(
            f"no {args.what} {args.id!r} is known here" + ("" if args.what == "media" else " (see `medialens people`)")
        )
        return 1
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. a damaged journal, Qdrant unreachable
        _err(f"forget {args.what} {args.id}: {exc} (run the same command again to finish)")
        return 1
    if args.json:
        _emit(done.as_dict())
        return 0
    print(
        f"forgot {args.what} {args.id}: {len(done.files)} files, {done.face_rows} face rows, {done.vectors} vectors, "
        f"{done.cache_entries} cached results, {done.runs_deleted} runs deleted"
    )
    for note in done.notes:
        print(f"note: {note}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """`review`: the safety review queue; `review KEY approve|reject|note [--note TEXT]` records a
    decision in the append-only review log (media_assets/service/review.py). Runs no model."""
    from media_assets.service import review
    from resources.store import MediaStore

    store = MediaStore(root=str(Paths.from_env().store))
    if args.key is None:
        items = review.queue(store)
        if args.json:
            _emit({"queue": items})
        elif not items:
            print("nothing to review: no media with a review or unsafe verdict is waiting for a decision")
        else:
            for item in items:
                note = f"  note: {item['review']['note']}" if item["review"] else ""
                print(f"{item['key']}  ({item['source_name']})  {item['verdict']}{note}")
                for reason in item["reasons"]:
                    print(f"    {reason}")
                for kf in item["keyframes"]:
                    labels = ", ".join(f"{lb['label']} {lb['score']:.2f}" for lb in kf["labels"]) or "-"
                    print(f"    t={kf['t']:8.2f}  {labels}  {kf['path']}")
        return 0
    if args.decision is None:
        _err("review KEY: say approve, reject or note (e.g. `medialens review KEY approve`)")
        return 2
    try:
        done = review.decide(store, args.key, args.decision, args.note)
    except review.UnknownMedia:
        _err(f"no media with key {args.key!r} (see `medialens review` for the queue)")
        return 1
    except review.BadDecision as exc:
        _err(f"review {args.key}: {exc}")
        return 2
    except review.NotReviewable as exc:
        _err(f"review {args.key}: {exc}")
        return 1
    if args.json:
        _emit(done)
    else:
        rec = done["recorded"]
        print(f"{rec['decision']} recorded for {rec['key']} (verdict {rec['verdict']}) at {rec['at']}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from media_assets.service.samples import generate_samples, require_tools

    require_tools()
    out = Path(args.out_dir)
    files = generate_samples(out)
    for f in files:
        print(f)
    return 0


def inbox_location(paths: Paths) -> str:
    """Where the upload sensor looks: the folder, or the S3 prefix as the user wrote it."""
    raw = os.environ.get("MEDIALENS_INBOX", "")
    return raw if raw.startswith("s3://") else str(paths.inbox)


def cmd_demo(args: argparse.Namespace) -> int:
    from media_assets.service.samples import generate_samples, require_tools

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
        f"{inbox_location(paths)}"
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

    li = sub.add_parser("library", help="every media: kind, duration, status and stale analyses")
    li.add_argument("--kind", choices=["video", "audio", "image"])
    li.add_argument("--status", choices=["analysed", "analysing", "failed", "registered-not-ingested"])
    li.add_argument("--stale", action="store_true", help="only media with a stale analysis")
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_library)

    ra = sub.add_parser("reanalyse", aliases=["reanalyze"], help="redo stale partitions as a Dagster backfill")
    ra.add_argument("--asset", action="append", help="asset to redo (repeatable); its dependants follow")
    ra.add_argument("--all-stale", action="store_true", help="every stale partition of every asset")
    ra.add_argument("--max-per-run", type=int, default=8, metavar="N", help="partitions per run (default 8)")
    ra.add_argument("--wait", action="store_true", help="wait for the runs (starts a daemon if none runs)")
    ra.add_argument("--timeout", type=float, default=3600.0, help=argparse.SUPPRESS)
    ra.add_argument("--json", action="store_true")
    ra.set_defaults(func=cmd_reanalyse)

    se = sub.add_parser("search", help="search transcripts, OCR, tags and summaries")
    se.add_argument("query")
    se.add_argument("--kind", choices=["transcript", "ocr", "tags", "summary", "image"])
    se.add_argument("--media", help="only this media key")
    se.add_argument("--media-kind", choices=["video", "audio", "image"], help="only media of this kind")
    se.add_argument("--language", help="only media whose speech is in this language (Whisper's code: en, de)")
    se.add_argument("--person", help="only media this person (id from `medialens people`) was seen in")
    se.add_argument("--from", dest="time_from", type=float, metavar="S", help="only moments that end at or after S s")
    se.add_argument("--to", dest="time_to", type=float, metavar="S", help="only moments that start at or before S s")
    se.add_argument("--limit", type=int, default=10)
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)

    pe = sub.add_parser("people", help="person dossiers: list, show ID, name ID NAME, merge A B, split ID FACE_ID")
    pe.add_argument("action", nargs="?", choices=["show", "name", "merge", "split"])
    pe.add_argument("args", nargs="*")
    pe.add_argument("--json", action="store_true")
    pe.set_defaults(func=cmd_people)

    fo = sub.add_parser("forget", help="delete everything derived from a media file or a person")
    fo.add_argument("what", choices=["media", "person"])
    fo.add_argument("id", help="media KEY (see `analyse`/`show`) or person ID (see `people`)")
    fo.add_argument("--json", action="store_true")
    fo.set_defaults(func=cmd_forget)

    rv = sub.add_parser("review", help="safety review queue: list, or KEY approve|reject|note [--note TEXT]")
    rv.add_argument("key", nargs="?", help="media KEY to decide on; without it, list the queue")
    rv.add_argument("decision", nargs="?", choices=["approve", "reject", "note"])
    rv.add_argument("--note", help="a remark kept with the decision (required for `note`)")
    rv.add_argument("--json", action="store_true")
    rv.set_defaults(func=cmd_review)

    sa = sub.add_parser("samples", help="generate the sample media set into a folder")
    sa.add_argument("out_dir")
    sa.set_defaults(func=cmd_samples)

    u = sub.add_parser("ui", help="the results UI in the browser: search moments, open a media at that second")
    u.add_argument("--port", type=int, default=8501)
    u.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    u.set_defaults(func=cmd_ui)

    d = sub.add_parser("demo", help="generate sample media and analyse them (what `make demo` runs)")
    d.set_defaults(func=cmd_demo)

    # operations verbs: each module adds its own parser (media_assets/service/health.py, stats.py, backup.py)
    from media_assets.service import backup, health, stats

    for verb in (health, stats, backup):
        verb.register(sub)
    return p


def _log_to_stderr() -> None:
    """medialens's own warnings (dead runs ended, pool waits) go to stderr like the progress."""
    logger = logging.getLogger("medialens")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (systemd, docker stop, kill) stops a command the way Ctrl-C does: the run in
    # progress ends CANCELED and what it had finished is kept (media_assets/plumbing/run_guard.py).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    _log_to_stderr()
    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        rc = 2
    except KeyboardInterrupt as exc:
        detail = f" ({exc})" if str(exc) else ""
        _err(f"interrupted{detail}: what was finished is kept; run the same command again to do the rest")
        rc = 130
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
