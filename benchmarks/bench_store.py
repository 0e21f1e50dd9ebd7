"""The review store (``model/review``): save throughput, and 8 concurrent sessions saving 25 reviews each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_store.py                  # SQLite, ~1 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_store.py --pg-url URL     # + PostgreSQL
    -> benchmarks/results/store.json + store.md

Per backend, in a fresh store under a temp dir:
- sequential: ``--n`` saves of distinct SIZE x SIZE images from one process (each a 16-bit PNG written
  and fsynced, then one committed transaction); saves/s and per-save latency; then the same reviews
  saved again (idempotent: no new row), ``list_reviews`` of all of them and one ``load_pixels``;
- concurrent: 8 processes (the ``--worker`` mode of this script) start together and save 25 distinct
  reviews each, then all save the same 5 again; rows counted, ids compared: lost and duplicated must
  both be 0, and the integrity check must be empty.
Wall-clock figures on a shared machine: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_files import write_result  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _pixels(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


def _review(pixels: np.ndarray, i: int):
    from model.review import FindingReview, Review, now_iso, pixel_sha256

    return Review(
        pixel_sha256(pixels),
        "CXR",
        (FindingReview("pleural_effusion", True, "left", "mild"), FindingReview("cardiomegaly", False)),
        None,
        f"Small left pleural effusion (case {i}).",
        "",
        {"teacher": {"report": "No acute findings."}, "student": {"report": "No acute findings."}},
        1,
        now_iso(),
    )


def _ms(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


def sequential(url: str, data_dir: Path, n: int, size: int) -> dict:
    from model.review import ReviewStore

    store = ReviewStore.open(url, data_dir=data_dir)
    images = [_pixels(10_000 + i, size) for i in range(n)]
    reviews = [_review(px, i) for i, px in enumerate(images)]
    lat = []
    t0 = time.perf_counter()
    for r, px in zip(reviews, images, strict=True):
        t = time.perf_counter()
        store.save_review(r, px)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    again = []
    for r, px in zip(reviews, images, strict=True):
        t = time.perf_counter()
        store.save_review(r, px)
        again.append(time.perf_counter() - t)
    t = time.perf_counter()
    listed = store.list_reviews()
    list_s = time.perf_counter() - t
    t = time.perf_counter()
    store.load_pixels(reviews[0].image_sha256)
    load_s = time.perf_counter() - t
    out = {
        "saves": n,
        "rows": store.count(),
        "saves_per_s": round(n / wall, 1),
        "save": _ms(lat),
        "idempotent_resave": _ms(again),
        "rows_after_resave": store.count(),
        "list_reviews_ms": round(list_s * 1000, 1),
        "listed": len(listed),
        "load_pixels_ms": round(load_s * 1000, 2),
    }
    store.close()
    return out


def concurrent(url: str, data_dir: Path, workers: int, per_worker: int, size: int) -> dict:
    from model.review import ReviewStore

    ReviewStore.open(url, data_dir=data_dir).close()
    go = data_dir / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker"]
    procs = [
        subprocess.Popen(
            [*cmd, url, str(data_dir), str(w), str(per_worker), str(size), str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(workers)
    ]
    time.sleep(2.0)  # let them import and open the store
    t0 = time.perf_counter()
    go.touch()
    outs = [json.loads(p.communicate(timeout=900)[0]) for p in procs]
    wall = time.perf_counter() - t0
    ids = [i for o in outs for i in o["ids"]]
    with ReviewStore.open(url, data_dir=data_dir) as store:
        rows = {r.id for r in store.list_reviews()}
        problems = store.integrity_check()
    return {
        "workers": workers,
        "saves_per_worker": per_worker,
        "resaves_per_worker": 5,
        "rows": len(rows),
        "expected_rows": workers * per_worker + max(0, 5 - per_worker),  # 5 re-saves of worker 0
        "lost": len(set(ids) - rows),
        "duplicated": len(ids) - len(set(ids)),
        "integrity_problems": len(problems),
        "wall_s": round(wall, 2),
        "saves_per_s": round(workers * (per_worker + 5) / wall, 1),
        "save": _ms([x for o in outs for x in o["lat"]]),
        "all_workers_ok": all(p.returncode == 0 for p in procs),
    }


def worker(url: str, data_dir: str, w: int, n: int, size: int, go: str) -> None:
    from model.review import ReviewStore

    store = ReviewStore.open(url, data_dir=Path(data_dir), timeout_s=120)
    while not Path(go).exists():
        time.sleep(0.005)
    ids, lat = [], []
    for i in range(n):
        px = _pixels(w * 1000 + i, size)
        t = time.perf_counter()
        ids.append(store.save_review(_review(px, w * 1000 + i), px))
        lat.append(time.perf_counter() - t)
    for i in range(5):  # the same 5 reviews from every worker: idempotent under contention
        px = _pixels(i, size)
        t = time.perf_counter()
        store.save_review(_review(px, i), px)
        lat.append(time.perf_counter() - t)
    print(json.dumps({"ids": ids, "lat": lat}))


def to_markdown(r: dict) -> str:
    lines = [
        "| backend | sequential saves/s | save p50 / p95 ms | re-save p50 ms | 8x25 concurrent: rows | lost | "
        "duplicated | integrity | wall s | saves/s | save p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, b in r["backends"].items():
        s, c = b["sequential"], b["concurrent"]
        lines.append(
            f"| {name} | {s['saves_per_s']} | {s['save']['p50_ms']} / {s['save']['p95_ms']} | "
            f"{s['idempotent_resave']['p50_ms']} | {c['rows']}/{c['expected_rows']} | {c['lost']} | "
            f"{c['duplicated']} | {'ok' if not c['integrity_problems'] else c['integrity_problems']} | "
            f"{c['wall_s']} | {c['saves_per_s']} | {c['save']['p50_ms']} / {c['save']['p95_ms']} |"
        )
    lines.append(
        f"\n{r['image_size']}x{r['image_size']} images; load average at start {r['load_avg_start']}, "
        f"{r['cpu_cores']} cores. Command: `{r['command']}`\n"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        url, data_dir, w, n, size, go = argv[1:]
        worker(url, data_dir, int(w), int(n), int(size), go)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="sequential saves")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--per-worker", type=int, default=25)
    ap.add_argument("--pg-url", default=os.environ.get("MEDDISTILL_TEST_PG_URL"), help="also on PostgreSQL")
    ap.add_argument("--out", default=str(RESULTS / "store.json"))
    args = ap.parse_args(argv)

    load0 = round(os.getloadavg()[0], 2)
    backends = {}
    for name in ["sqlite"] + (["postgresql"] if args.pg_url else []):
        with tempfile.TemporaryDirectory() as tmp:
            res = {}
            for part in ("sequential", "concurrent"):
                d = Path(tmp) / part
                if name == "sqlite":
                    url = f"sqlite:///{d / 'meddistill.sqlite'}"
                else:
                    url = _fresh_pg(args.pg_url, part)
                if part == "sequential":
                    res[part] = sequential(url, d, args.n, args.size)
                else:
                    res[part] = concurrent(url, d, args.workers, args.per_worker, args.size)
                print(name, part, res[part], flush=True)
            backends[name] = res
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_store.py" + (
        " --pg-url $MEDDISTILL_TEST_PG_URL" if args.pg_url else ""
    )
    result = {
        "command": cmd,
        "image_size": args.size,
        "backends": backends,
        "load_avg_start": load0,
        "cpu_cores": len(os.sched_getaffinity(0)),
    }
    write_result(args.out, result, to_markdown)
    return 0


def _fresh_pg(base: str, tag: str) -> str:
    """A new database on the server of ``base`` (the benchmark never touches existing data)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"mdbench_{tag}_{os.getpid()}_{int(time.time())}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


if __name__ == "__main__":
    raise SystemExit(main())
