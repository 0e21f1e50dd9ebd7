"""Efficiency: parameters, checkpoint bytes, FLOPs, latency and peak memory of a model.

Protocol (written into every result, see :func:`efficiency_protocol`):

- parameters: unique parameters of the ReportModel (tied embeddings once).
- checkpoint bytes: every top-level file in the checkpoint folder (weights + config + tokenizer + card), and
  the ``*.safetensors`` weights alone.
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (counts matmul / conv FLOPs = 2 x MACs) on
  one image at the model's input size: ``encode_heads`` = trunk + heads + decoder memory;
  ``decode_step`` = the marginal cost of one more token in a teacher-forced decoder pass
  (FLOPs at T=33 minus T=32; no KV cache, so an upper bound of a cached greedy step);
  ``report_estimate`` = encode_heads + mean generated tokens x decode_step.
- latency: batch 1, wall clock around ``Predictor.predict`` (encode + heads + greedy report, the
  app's path) after ``warmup`` untimed rounds, ``runs`` >= 20 timed rounds; every round runs each
  model once on the same study, in a rotating order, so machine noise hits all models alike;
  all models under the same ``torch.set_num_threads``. Median, p10, p90, and the medians of the
  predictor's own stage breakdown (encode / heads / decode).
- peak memory: high-water resident set size (/proc VmHWM) of a fresh subprocess that loads the
  checkpoint and predicts one study; ``model_rss_mb`` subtracts the RSS measured after imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from model.networks.multitask import count_parameters  # noqa: F401  (one home; evaluate reads it here)

FLOP_SEQ_LEN = 32
DEFAULT_RUNS = 20
DEFAULT_WARMUP = 3


def efficiency_protocol(
    runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, threads: int | None = None
) -> dict:
    return {
        "parameters": "unique parameters of the ReportModel",
        "checkpoint_bytes": "all files in the checkpoint folder; weights_bytes = *.safetensors",
        "flops": "torch.utils.flop_counter (2 x MACs), batch 1 at the model's image size; encode_heads = "
        "trunk + heads + decoder memory; decode_step = FLOPs(T=33) - FLOPs(T=32) teacher-forced, no KV cache",
        "latency": f"batch 1, Predictor.predict (encode + heads + greedy report), {warmup} warm-up rounds, "
        f"{runs} timed rounds, models interleaved in rotating order, same torch threads",
        "peak_memory": "max RSS of a fresh subprocess that loads the checkpoint and predicts one study",
        "runs": runs,
        "warmup": warmup,
        "threads": threads if threads is not None else torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------------
# Size


def checkpoint_bytes(checkpoint_dir: str | Path) -> dict:
    """Bytes of the checkpoint folder's files and of its safetensors weights.

    Top-level files only: a training run's folder also holds resumable state (``stage_*/``: optimiser
    moments, teacher cache), which is not part of the checkpoint a user loads.
    """
    root = Path(checkpoint_dir)
    files = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
    total = sum(p.stat().st_size for p in files)
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    return {"checkpoint_bytes": total, "weights_bytes": weights, "checkpoint_mb": round(total / 2**20, 3)}


# ----------------------------------------------------------------------------------------------
# FLOPs


def _count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops(model, image_size: int | None = None, seq_len: int = FLOP_SEQ_LEN) -> dict:
    """FLOPs of encode + heads (+ decoder memory) and of one decoder step, batch 1.

    ``image_size``: the served input size (``Predictor.image_size``); default the config's.
    """
    cfg = model.cfg
    device = next(model.parameters()).device
    size = int(image_size or cfg.image_size)
    x = torch.rand(1, 1, size, size, device=device)
    ctx = torch.zeros(1, cfg.context_dim, device=device)
    was_training = model.training
    model.eval()
    try:

        def encode():
            f = model.forward_features(x)
            model.build_memory(f, model.forward_heads(f, ctx))

        seq_len = max(2, min(seq_len, cfg.max_len - 1))

        def tf(t: int):
            ids = torch.full((1, t), 5, dtype=torch.long, device=device)
            return lambda: model(x, ctx, ids, torch.ones_like(ids))

        encode_heads = _count(encode)
        step = _count(tf(seq_len + 1)) - _count(tf(seq_len))
    finally:
        model.train(was_training)
    return {"encode_heads": encode_heads, "decode_step": int(step), "seq_len": seq_len, "image_size": size}


# ----------------------------------------------------------------------------------------------
# Latency


def _quantile(xs: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else float("nan")


def interleaved_latency(
    predictors: Mapping[str, object],
    studies: Sequence,
    *,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    style=None,
    contexts: Sequence | None = None,
) -> dict:
    """Median latency per model, models interleaved round by round on the same studies.

    Returns ``{name: {"median_ms", "p10_ms", "p90_ms", "mean_ms", "runs", "stages_median_ms",
    "tokens_median"}}``; round ``i`` uses ``studies[i % len(studies)]``.
    """
    if not studies:
        raise ValueError("latency needs at least one study")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    names = list(predictors)
    wall: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    tokens: dict[str, list[int]] = {n: [] for n in names}
    try:
        for i in range(warmup + runs):
            study = studies[i % len(studies)]
            context = contexts[i % len(contexts)] if contexts else None
            k = i % len(names)
            for name in names[k:] + names[:k]:  # rotate who goes first
                t0 = time.perf_counter()
                pred = predictors[name].predict(study, context=context, style=style)
                dt = (time.perf_counter() - t0) * 1000.0
                if i < warmup:
                    continue
                wall[name].append(dt)
                tokens[name].append(len(pred.tokens))
                for stage, ms in (pred.latency_ms or {}).items():
                    stages[name].setdefault(stage, []).append(float(ms))
    finally:
        torch.set_num_threads(old_threads)
    return {
        n: {
            "median_ms": _quantile(wall[n], 0.5),
            "p10_ms": _quantile(wall[n], 0.1),
            "p90_ms": _quantile(wall[n], 0.9),
            "mean_ms": float(np.mean(wall[n])),
            "runs": len(wall[n]),
            "stages_median_ms": {s: _quantile(v, 0.5) for s, v in stages[n].items()},
            "tokens_median": _quantile(tokens[n], 0.5),
        }
        for n in names
    }


# ----------------------------------------------------------------------------------------------
# Peak memory (fresh subprocess per checkpoint)


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), else the high-water mark."""
    now = _proc_status_mb("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_rss_mb() -> float:
    """High-water RSS of this process. ``ru_maxrss`` survives exec on Linux (a child started from a
    big parent inherits its figure), so /proc's VmHWM, which is per address space, comes first."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_memory(checkpoint_dir: str | Path, threads: int = 1, timeout: float = 300.0) -> dict:
    """Peak RSS of loading ``checkpoint_dir`` and predicting one study, in a fresh process."""
    cmd = [sys.executable, "-m", "model.evaluate.efficiency", "--peak-memory", str(checkpoint_dir),
           "--threads", str(threads)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            return {"peak_rss_mb": None, "error": (done.stderr or done.stdout)[-400:]}
        return json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        return {"peak_rss_mb": None, "error": f"timed out after {timeout:.0f} s"}


def _measure_peak_memory(checkpoint_dir: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    import model.checkpoints  # noqa: F401  (imports count toward the baseline, not the model)
    import model.networks  # noqa: F401
    from model.inference import Predictor
    from model.types import Study

    base = _rss_mb()
    predictor = Predictor.from_dir(checkpoint_dir, "memory")
    size = predictor.image_size
    rng = np.random.default_rng(0)
    study = Study(pixels=rng.random((max(size, 64), max(size, 64)), dtype=np.float32), modality="CXR")
    predictor.predict(study)
    peak = _peak_rss_mb()
    return {
        "peak_rss_mb": round(peak, 1),
        "baseline_rss_mb": round(base, 1),
        "model_rss_mb": round(peak - base, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="efficiency helpers (internal)")
    p.add_argument("--peak-memory", required=True, help="checkpoint folder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(_measure_peak_memory(args.peak_memory, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
