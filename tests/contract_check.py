"""Check the `medialens` CLI against docs/contract.md on the given media files (what `make contract` runs).

Usage, from the project root:
    .venv/bin/python tests/contract_check.py FILE... [--ml .venv/bin/medialens] [--config FILE] [--keep]

Analyses the files into a fresh temporary MEDIALENS_HOME / DAGSTER_HOME, then runs every `--json`
command of the contract against them (analyse, show, search, people, people show/name, stale,
reanalyse, forget person/media) and checks their shapes and the rules the contract states (absent
analyses null, never missing; exit codes; nothing stale after a clean analyse). The steps are those
of tests/test_contract.py (tests/contract_shapes.py). Shapes only, not the quality of the analyses.
Exit 0 when everything matches; otherwise each mismatch is printed with its JSON path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `tests` importable

from tests import contract_shapes as cs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the contract steps on the files of the command line; 0 when the contract holds."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--ml", default=str(Path(sys.executable).parent / "medialens"), help="the medialens executable")
    ap.add_argument(
        "--config",
        default=os.environ.get("MEDIALENS_CONFIG"),
        help="medialens.yaml for the temporary home (default: $MEDIALENS_CONFIG, else the defaults)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary home and print where it is")
    ap.add_argument("--quiet", action="store_true", help="do not print each command as it runs")
    a = ap.parse_args(argv)
    missing = [f for f in a.files if not Path(f).is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="medialens-contract-"))
    config = Path(a.config).read_text() if a.config else None
    session = cs.make_session(os.path.abspath(a.ml), work, config_text=config)
    started = time.monotonic()
    if not a.quiet:
        session.log = lambda msg: print(f"[{time.monotonic() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)
    errs = cs.check_analyse(session, [os.path.abspath(f) for f in a.files])
    for _name, step in cs.STEPS:
        errs += step(session)
    n = len(session.results)
    print("\n".join(errs) if errs else f"contract holds for {n} file(s) ({time.monotonic() - started:.0f} s)")
    if a.keep:
        print(f"home: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
