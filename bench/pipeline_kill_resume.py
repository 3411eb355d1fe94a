"""Kill-and-resume of ``tomofuse run``: SIGKILL at many moments over all stages, rerun until done.

Raw files of the demo config (``tomofuse.pipeline.simulate_raw``), one uninterrupted reference run,
then ``tomofuse run`` in another directory killed at each target of ``TARGETS`` (a random moment
inside a stage, or the moment a file is being written; see ``tests/pipeline_tools.kill_and_resume``)
and rerun until it finishes.  Checked: the outputs equal the reference bit for bit (every dataset and
attribute but the time of writing), no stage that had finished ran again (its manifest's start time),
and after every kill each stage marked done verifies (its outputs hash as its manifest says).

Run from the repository root::

    python bench/pipeline_kill_resume.py /tmp/kr [--seed 0] [--shape 48 64 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tomofuse import pipeline  # noqa: E402

#: the short stages (< 1 s on the demo) are hit by waiting for their file writes
SHORT = [("pxct", "write"), ("txtm", "write"), ("fsc", "write"), ("fuse", "write"), ("particles", "write"),
         ("coverage", "write"), ("report", "write")]
TARGETS = [("ptycho", "time"), ("ptycho", "write"), ("ptycho", "time"), ("ptycho", "write"), ("pxct", "time"),
           ("txtm", "write"), ("register", "time"), ("fuse", "write"), ("segment", "time"), ("particles", "write"),
           ("coverage", "write"), ("echem", "time"), ("echem", "write"), ("report", "write")]


def main(argv=None) -> None:
    from pipeline_tools import kill_and_resume, run_digest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=(48, 64, 64))
    ap.add_argument("--short", action="store_true", help="target the short stages' file writes (SHORT)")
    args = ap.parse_args(argv)
    sim = pipeline.simulate_raw(args.out / "raw", shape=tuple(args.shape), threads=2, cycled=True)
    ref = args.out / "reference"
    t = time.perf_counter()
    r = pipeline.run(sim.config, output=ref)
    print(f"reference run: {time.perf_counter() - t:.1f} s")
    seconds = {s: r.manifests[s]["wall_s"] for s in pipeline.STAGES}
    t = time.perf_counter()
    rep = kill_and_resume(sim.config, args.out / "killed", targets=SHORT if args.short else TARGETS, stage_seconds=seconds, seed=args.seed)
    rep["wall_s"] = time.perf_counter() - t
    a, b = run_digest(ref), run_digest(args.out / "killed")
    rep["outputs_compared"] = len(a)
    rep["outputs_differing"] = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    print(json.dumps(rep, indent=1))
    (args.out / "kill_resume.json").write_text(json.dumps(rep, indent=1))
    ok = len(rep["kills"]) >= (3 if args.short else 8) and not rep["finished_stage_reruns"] and not rep["outputs_differing"]
    print(f"{len(rep['kills'])} kills in {rep['attempts']} attempts; finished stages rerun: "
          f"{rep['finished_stage_reruns'] or 'none'}; {rep['outputs_compared']} outputs compared, differing: "
          f"{rep['outputs_differing'] or 'none'} -> {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
