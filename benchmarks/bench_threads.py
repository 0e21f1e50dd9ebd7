"""Thread policies for inference, measured in one process (no browser): which one the app should use.

    .venv/bin/python benchmarks/bench_threads.py                 # every policy, 3 interleaved rounds
    .venv/bin/python benchmarks/bench_threads.py --policies inline queue-cores-adaptive --rounds 5

One "session" does what the Compare page does for one upload: teacher and student predictions, a
Grad-CAM overlay for each, and the two per-token divergence passes, one step after another (each step
waits for the previous, as a page script does). For each policy in ``model.serving.POLICIES``:

* ``single_rendered_s`` / ``single_s``: one session alone, until its reports and overlays were ready /
  until its highlights were too (the upload latency's model work);
* ``concurrent_rendered_all_s``, ``concurrent_all_s`` / ``concurrent_median_s``: ``--sessions`` sessions
  started together, time until all had reports and overlays, until all (the median one) finished;
* ``cpu_s_per_session``: this process's CPU time (user + system) during the concurrent run, per
  session. Wall times on a shared machine mostly say how much CPU other processes left us; CPU time
  says what a policy costs (oversubscribed OpenMP teams spin and burn it), so it ranks policies even
  under load.

Policies run interleaved, round by round, so background load from other processes hits them alike;
the medians over rounds go to ``benchmarks/results/threads.json`` with the load average at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.serving import DEFERRED, POLICIES, URGENT, InferenceQueue, cpu_cores  # noqa: E402


def make_studies(n: int):
    """``n`` distinct CXR studies: a shipped phantom with a different pixel changed in each."""
    from model.data.imaging import load_study
    from model.types import Study

    base = load_study(
        (ROOT / "assets/samples/cxr_cardiomegaly.png").read_bytes(), "x.png", modality_hint="CXR"
    )
    out = []
    for i in range(n):
        px = base.pixels.copy()
        px[0, i] = (px[0, i] + 0.5) % 1.0
        out.append(Study(pixels=px, modality="CXR", source=f"bench_{i}", sha256=str(i)))
    return out


def session_steps(predictors: dict, study):
    """The Compare page's model calls for one upload, as (priority, thunk) in page order: reports and
    overlays urgent, the divergence highlights deferred (as components/predictions.py queues them)."""
    from model.explain.divergence import token_divergence
    from model.explain.gradcam import explain

    preds = {}
    for m, p in predictors.items():
        yield URGENT, lambda p=p, m=m: preds.__setitem__(m, p.predict(study))
    for p in predictors.values():
        yield URGENT, lambda p=p: explain(p, study, "finding:cardiomegaly")
    t, s = predictors["teacher"], predictors["student"]
    for m in predictors:
        yield DEFERRED, lambda m=m: token_divergence(t, s, study, preds[m].tokens)


def run_session(q: InferenceQueue, predictors: dict, study, t0: float) -> tuple[float, float]:
    """(seconds until both reports and overlays were ready, seconds until the highlights were too)."""
    rendered = 0.0
    for priority, step in session_steps(predictors, study):
        if priority == DEFERRED and not rendered:
            rendered = time.perf_counter() - t0
        q.submit_at(priority, step).result()
    return rendered, time.perf_counter() - t0


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def concurrent(q: InferenceQueue, predictors: dict, studies) -> tuple[list[tuple[float, float]], float]:
    """Per-session (rendered, done) wall times and the process CPU seconds the whole run took."""
    times = [(0.0, 0.0)] * len(studies)
    c0 = cpu_seconds()
    t0 = time.perf_counter()

    def one(i):
        times[i] = run_session(q, predictors, studies[i], t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(studies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, cpu_seconds() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policies", nargs="*", default=list(POLICIES))
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "threads.json")
    args = ap.parse_args(argv)

    from model.inference import Predictor

    predictors = {m: Predictor.from_dir(m, m) for m in ("teacher", "student")}
    studies = make_studies(args.sessions)
    queues = {name: InferenceQueue(POLICIES[name]) for name in args.policies}
    for q in queues.values():  # warm-up: kernels, OpenMP teams, worker threads
        run_session(q, predictors, studies[0], time.perf_counter())

    keys = ("single", "single_rendered", "all", "median", "rendered_all", "cpu")
    rows: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in queues}
    loads = []
    for r in range(args.rounds):
        for name, q in queues.items():
            row = rows[name]
            single_rendered, single = run_session(q, predictors, studies[0], time.perf_counter())
            row["single"].append(single)
            row["single_rendered"].append(single_rendered)
            times, cpu = concurrent(q, predictors, studies)
            done = [t[1] for t in times]
            row["cpu"].append(cpu / len(studies))
            row["all"].append(max(done))
            row["median"].append(statistics.median(done))
            row["rendered_all"].append(max(t[0] for t in times))
            loads.append(os.getloadavg()[0])
            print(
                f"round {r} {name:22s} single {single:.2f} s (rendered {single_rendered:.2f}), "
                f"{args.sessions} sessions: rendered all {row['rendered_all'][-1]:.2f} s, done all "
                f"{max(done):.2f} s, CPU {cpu / len(studies):.2f} s/session, load {loads[-1]:.2f}",
                flush=True,
            )
    for q in queues.values():
        q.close()

    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    result = {
        "command": "benchmarks/bench_threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sessions": args.sessions,
        "rounds": args.rounds,
        "cores": cpu_cores(),
        "load_avg_1min_during": [round(min(loads), 2), round(max(loads), 2)],
        "policies": {
            name: {
                "workers": POLICIES[name].workers,
                "torch_threads": POLICIES[name].torch_threads,
                "single_rendered_s": med(v["single_rendered"]),
                "single_s": med(v["single"]),
                "concurrent_rendered_all_s": med(v["rendered_all"]),
                "concurrent_all_s": med(v["all"]),
                "concurrent_median_s": med(v["median"]),
                "cpu_s_per_session": med(v["cpu"]),
                "concurrent_all_rounds_s": [round(x, 2) for x in v["all"]],
            }
            for name, v in rows.items()
        },
    }
    pol = result["policies"]
    result["best_concurrent_wall"] = min(pol, key=lambda n: pol[n]["concurrent_all_s"])
    result["best_cpu_per_session"] = min(pol, key=lambda n: pol[n]["cpu_s_per_session"])
    print(json.dumps(result, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
