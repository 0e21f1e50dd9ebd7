"""Phantoms per second: generate N phantoms (half chest X-ray, half CT) on one core.

  .venv/bin/python benchmarks/bench_phantoms.py [--n 1000] [--size 256]

Prints a small table and writes benchmarks/results/phantoms.json.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as documented

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from model.data.phantom import make_case  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "phantoms.json"


def bench(modality: str, n: int, size: int) -> dict:
    make_case(0, modality, size)  # warm-up (imports, cached interpolation matrices)
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        make_case(1_000_000 + i, modality, size)
        times[i] = time.perf_counter() - t0
    return {
        "modality": modality,
        "n": n,
        "size": size,
        "seconds": float(times.sum()),
        "per_second": float(n / times.sum()),
        "median_ms": float(np.median(times) * 1e3),
        "p95_ms": float(np.percentile(times, 95) * 1e3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="phantoms in all (half CXR, half CT)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rows = [bench(m, args.n // 2, args.size) for m in ("CXR", "CT")]
    total_n = sum(r["n"] for r in rows)
    total_s = sum(r["seconds"] for r in rows)
    rows.append({"modality": "all", "n": total_n, "size": args.size, "seconds": total_s,
                 "per_second": total_n / total_s})  # fmt: skip
    print(f"{'modality':<9}{'n':>6}{'seconds':>10}{'per s':>9}{'median ms':>11}{'p95 ms':>9}")
    for r in rows:
        print(f"{r['modality']:<9}{r['n']:>6}{r['seconds']:>10.2f}{r['per_second']:>9.1f}"
              f"{r.get('median_ms', float('nan')):>11.2f}{r.get('p95_ms', float('nan')):>9.2f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "rows": rows,
        "command": f"python benchmarks/bench_phantoms.py --n {args.n} --size {args.size}",
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__, "threads": 1, "load_avg": list(os.getloadavg())},
    }  # fmt: skip
    args.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
