"""Fault injection for the crash-safety tests: kill this process at a named point.

`MEDIALENS_FAULT=<point>[:<signal>][@<n>]` makes the n-th arrival (default the first) at
`fault_point("<point>")` send this process SIGKILL (or `sigint` / `sigterm`). The tests use it to
prove that a command killed exactly there is finished by running it again (tests/faults/). Never
set in use; unset, a point costs one dictionary lookup.

Points: `keyframes:frame` (a keyframe written during the decode), `model:<asset>` (a batch of
keyframes about to go through that asset's model), `qdrant:upsert` (a partition's first points
written, its stale ones not yet deleted), `events:index` (a batch of materialisation events in the
run's log but not yet in the index), `forget:<media|person>.<step>` (media_assets/service/forget.py).
"""

from __future__ import annotations

import os
import signal

ENV = "MEDIALENS_FAULT"
_SIGNALS = {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}
_arrivals: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Kill this process here if MEDIALENS_FAULT names `point` (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    name, _, how = target.partition(":sig")
    how = f"sig{how}" if how else "sigkill"
    if name != point:
        return
    _arrivals[point] = _arrivals.get(point, 0) + 1
    if _arrivals[point] == int(nth or 1):
        os.kill(os.getpid(), _SIGNALS[how.lower()])
