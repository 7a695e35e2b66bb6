"""Run one benchmark side by side on two versions of the code: a git ref and the work tree.

    python benchmarks/ab.py --base REF [--rounds 2] bench_training.py [-- --images 8000]

``REF`` (a commit, tag or branch) is checked out into a temporary ``git worktree``; each
round runs the benchmark script once on each version, alternating which goes first
(A B, B A, ...) so that a slow spell of the shared machine lands on both. Each run is a
fresh subprocess started in its version's folder with that folder first on ``PYTHONPATH``,
so it imports that version's ``hil``; the script is the version's own copy (a benchmark
whose JSON changed between versions is still compared key by key). Prints one JSON object:
per numeric leaf of the benchmark's JSON (keys joined by ``.``), each side's runs, best
(min and max: which one is "best" depends on the figure) and median, and the ratio of the
medians head / base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _flatten(obj, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON value, keyed by their dotted path (bools are not numbers)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix.rstrip(".")] = float(obj)
    return out


def _run(tree: Path, script: str, args: list[str]) -> dict:
    """One run of ``tree/benchmarks/script --json args``; its last stdout line as JSON."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(tree / "benchmarks" / script), "--json", *args]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ab: {script} failed in {tree} (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        sys.exit(f"ab: {script} printed no JSON object in {tree}:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])


def _side(runs: list[dict]) -> dict[str, dict]:
    leaves = [_flatten(r) for r in runs]
    keys = sorted(set().union(*leaves))
    out = {}
    for k in keys:
        vals = [lv[k] for lv in leaves if k in lv]
        out[k] = {
            "runs": vals,
            "min": min(vals),
            "max": max(vals),
            "median": statistics.median(vals),
        }
    return out


def compare(base_ref: str, script: str, args: list[str], rounds: int) -> dict:
    """Run ``script`` ``rounds`` times on each side, interleaved; the comparison as a dict."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", base_ref + "^{commit}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="hil-ab-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(base_tree), sha], cwd=ROOT, check=True
        )
        try:
            results: dict[str, list[dict]] = {"base": [], "head": []}
            for i in range(rounds):
                order = [("base", base_tree), ("head", ROOT)]
                for side, tree in order if i % 2 == 0 else order[::-1]:
                    print(f"ab: round {i + 1}/{rounds}: {side}", file=sys.stderr, flush=True)
                    results[side].append(_run(tree, script, args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
    base, head = _side(results["base"]), _side(results["head"])
    ratio = {
        k: head[k]["median"] / base[k]["median"]
        for k in head
        if k in base and base[k]["median"] not in (0.0,)
    }
    return {
        "benchmark": script,
        "args": args,
        "rounds": rounds,
        "base": {"ref": base_ref, "commit": sha, "figures": base},
        "head": {"commit": _head_commit(), "figures": head},
        "ratio_head_over_base_median": ratio,
    }


def _head_commit() -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", required=True, help="git ref of the 'before' version")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side, interleaved")
    ap.add_argument("--json", action="store_true", help="accepted for symmetry; always JSON")
    ap.add_argument("script", help="a benchmarks/bench_*.py file name")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: the benchmark's options")
    ns = ap.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    print(json.dumps(compare(ns.base, Path(ns.script).name, args, ns.rounds)))


if __name__ == "__main__":
    main()
