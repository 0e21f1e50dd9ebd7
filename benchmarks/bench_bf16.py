"""float32 vs bfloat16-autocast speed of a ResNet-50 training step on this CPU (the profiles' ``bf16`` gate).

    .venv/bin/python benchmarks/bench_bf16.py --size 160 --batch 16     # -> benchmarks/results/bf16.json

``pipeline.Profile.bf16`` defaults to ``config.cpu_has_fast_bf16()`` (AMX or AVX-512 bf16 units in
/proc/cpuinfo). On a 2-core AVX2 EPYC bf16 was emulated and 17x slower (retrain_v5.json); this measures
what the gate decides on the machine at hand: steps alternate fp32 / bf16 (warm-up steps dropped), the
median of each is reported with the speed-up, the CPU flags and the load average (stop other jobs first:
the figure is wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per precision (after 1 warm-up each)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bf16.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from model.distill.config import cpu_has_fast_bf16
    from model.networks.backbones import ResNet50

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        ResNet50(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2048, 10)
    )
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    load_before = os.getloadavg()
    for i in range(args.steps + 1):
        for name in ("fp32", "bf16"):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step of each precision warms up its kernels
                times[name].append(time.perf_counter() - t)
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "command": "benchmarks/bench_bf16.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "image_size": args.size, "batch": args.batch, "threads": args.threads,
        "step_s_median": {k: round(v, 3) for k, v in med.items()},
        "img_per_s": {k: round(args.batch / v, 1) for k, v in med.items()},
        "bf16_speedup": round(med["fp32"] / med["bf16"], 2),
        "cpu_bf16_flags": sorted(flags & {"amx_bf16", "avx512_bf16", "avx512f", "avx2"}),
        "gate_cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
    }  # fmt: skip
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
