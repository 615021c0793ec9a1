"""`media_upload_sensor`: files dropped into the inbox become partitions and runs, with no click.

The new files of a tick share runs (a partition range of at most MAX_PARTITIONS_PER_RUN files):
each model loads once for all of them instead of once per file. A file that fails in such a run
is taken out by `failed_batch_sensor`, which runs the others on.
"""

import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from media_assets.analysis.inspect import Limits
from media_assets.config import current_settings
from media_assets.jobs import ANALYSE_JOB_NAME
from media_assets.partitions import MEDIA_PARTITIONS_NAME, media_partitions, partitions_run_request
from media_assets.per_media import MAX_PARTITIONS_PER_RUN
from media_assets.registration import admit, register, stored_suffix
from resources.inbox import InboxResource
from resources.store import MediaStore, move_file
from sensors.inbox import DUPLICATES_DIR, REJECTED_DIR, list_inbox, set_aside, split_stable, symlink_problem


@sensor(
    job_name=ANALYSE_JOB_NAME,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each stable new file in the inbox as a `media` partition and runs the "
    f"analysis for the tick's new files together (runs of at most {MAX_PARTITIONS_PER_RUN}); refused "
    "files go to inbox/rejected/ with a .reason.txt.",
)
def media_upload_sensor(context: SensorEvaluationContext, inbox: InboxResource, store: MediaStore) -> SensorResult:
    root = inbox.root
    root.mkdir(parents=True, exist_ok=True)
    previous = json.loads(context.cursor)["pending"] if context.cursor else {}
    stable, pending = split_stable(list(list_inbox(root)), previous)

    limits = Limits.from_params(current_settings().of("media_file"))
    known = set(context.instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    new: list[tuple[str, str]] = []  # (key, the user's file name), in the order they are added
    budget_files, budget_bytes = inbox.max_files_per_tick, inbox.max_mb_per_tick * 2**20
    for c in stable:
        if budget_files <= 0 or (budget_bytes < c.signature[0] and budget_files < inbox.max_files_per_tick):
            pending[c.rel] = list(c.signature)  # stable already: taken on the next tick
            continue
        budget_files -= 1
        budget_bytes -= c.signature[0]
        problem = symlink_problem(c.path, root)
        if problem:
            set_aside(c.path, root, REJECTED_DIR, problem)
            context.log.warning(f"rejected {c.rel}: {problem}")
            continue
        a = admit(c.path, limits, known)
        if a.status == "rejected":
            set_aside(c.path, root, REJECTED_DIR, a.reason or "rejected")
            context.log.warning(f"rejected {c.rel}: {a.reason}")
            continue
        if a.status == "duplicate":
            set_aside(c.path, root, DUPLICATES_DIR, f"{a.reason} (not analysed again)")
            context.log.info(f"{c.rel}: {a.reason}; moved to {DUPLICATES_DIR}/")
            continue
        assert a.key is not None and a.info is not None
        taken = store.incoming_dir / f"{a.key}{stored_suffix(a.source_name, a.info.container)}"
        move_file(c.path, taken)
        register(store, a, taken, move=True)
        known.add(a.key)
        new.append((a.key, a.source_name))
        context.log.info(f"{c.rel}: new media {a.key} ({a.info.kind}, {a.info.size_bytes / 2**20:.1f} MB)")

    cursor = json.dumps({"pending": pending}, sort_keys=True)
    if not new:
        waiting = f"; {len(pending)} file(s) waiting to be stable" if pending else ""
        return SensorResult(skip_reason=f"no new media{waiting}", cursor=cursor)
    return SensorResult(
        run_requests=batch_runs(new),
        dynamic_partitions_requests=[media_partitions.build_add_request([key for key, _ in new])],
        cursor=cursor,
    )


def batch_runs(new: list[tuple[str, str]], limit: int | None = None) -> list[RunRequest]:
    """Runs over the new partitions, `limit` at a time. They are added in this order in one request,
    so neighbours form a range; a lone file gets a plain single-partition run."""
    limit = limit or MAX_PARTITIONS_PER_RUN
    runs: list[RunRequest] = []
    for start in range(0, len(new), limit):
        chunk = new[start : start + limit]
        if len(chunk) == 1:
            key, name = chunk[0]
            runs.append(RunRequest(partition_key=key, run_key=key, tags={"medialens/source": name}))
            continue
        first, last = chunk[0][0], chunk[-1][0]
        names = ", ".join(name for _, name in chunk)
        tags = {
            "medialens/files": str(len(chunk)),
            "medialens/sources": names if len(names) <= 200 else names[:197] + "...",
        }
        runs.append(partitions_run_request(first, last, run_key=f"{first}..{last}", tags=tags))
    return runs
