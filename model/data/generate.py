"""Write a phantom dataset to disk (the engine of ``meddistill generate-data``).

Layout of ``DIR``::

    images/ID.png    8-bit grayscale phantom
    masks/ID.png     uint8 bitmask: bit i = FINDINGS[i] on CXR, bit 0 = tumour on CT
    labels/ID.json   CaseTruth.to_dict() + "treatments" [{name, reason}] + "reports" {detail: text}
    annotation.json  R2Gen layout {"train": [...], "val": [...], "test": [...]}
    dataset.json     provenance: generator, version, seed, counts, time

Case ``i`` of a modality is rendered from a seed derived from (seed, modality, i) alone, so a set is
byte-identical for a seed whatever the number of worker processes, and adding CT cases does not
change the CXR ones. Splits are an exact, seeded permutation per modality.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.types import FINDINGS

GENERATOR = "meddistill generate-data"
GENERATOR_VERSION = "1"
MODALITY_CODE = {"CXR": 0, "CT": 1}
OWNED_DIRS = ("images", "masks", "labels")
OWNED_FILES = ("annotation.json", "dataset.json")


class DatasetDirError(RuntimeError):
    """The output folder holds something that is not ours to overwrite."""


@dataclass(frozen=True)
class CaseJob:
    """One phantom to render: everything a worker process needs."""

    case_id: str
    modality: str
    seed: int
    split: str
    size: int
    out: str


# ----------------------------------------------------------------------------------------------
# Seeds, splits, masks


def case_seed(seed: int, modality: str, index: int) -> int:
    """The seed of case ``index`` of ``modality`` in a set generated with ``seed``."""
    ss = np.random.SeedSequence([int(seed), MODALITY_CODE[modality], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def case_id(modality: str, index: int) -> str:
    return f"{modality.lower()}_{index:05d}"


def assign_splits(n: int, seed: int, modality: str, val_frac: float, test_frac: float) -> list[str]:
    """Exactly round(n*test_frac) test and round(n*val_frac) val cases, chosen by a seeded permutation."""
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise ValueError(f"--val-frac {val_frac} and --test-frac {test_frac} must be >= 0 and sum below 1")
    n_test, n_val = int(round(n * test_frac)), int(round(n * val_frac))
    n_val = min(n_val, n - n_test)
    order = np.random.default_rng([int(seed), MODALITY_CODE[modality], 7]).permutation(n)
    splits = ["train"] * n
    for rank, i in enumerate(order):
        splits[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return splits


def mask_bits(modality: str) -> dict[str, int]:
    """Mask name -> bit: FINDINGS on CXR, "tumour" on CT."""
    return {"tumour": 0} if modality == "CT" else {name: i for i, name in enumerate(FINDINGS)}


def encode_masks(masks: dict[str, np.ndarray], modality: str, shape: tuple[int, int]) -> np.ndarray:
    """Boolean masks -> one uint8 bitmask image."""
    bits = mask_bits(modality)
    out = np.zeros(shape, dtype=np.uint8)
    for name, m in masks.items():
        if name not in bits:
            raise ValueError(f"mask {name!r} has no bit on {modality}")
        out |= np.asarray(m, dtype=bool).astype(np.uint8) << bits[name]
    return out


def decode_masks(bitmask: np.ndarray, modality: str) -> dict[str, np.ndarray]:
    """uint8 bitmask -> {name: bool mask} for every name with at least one pixel set."""
    out = {}
    for name, bit in mask_bits(modality).items():
        m = (np.asarray(bitmask, dtype=np.uint8) >> bit) & 1
        if m.any():
            out[name] = m.astype(bool)
    return out


def read_masks(file, modality: str) -> dict[str, np.ndarray]:
    """A bitmask PNG (path or file object) -> {name: bool mask} of the present ones."""
    with Image.open(file) as im:
        return decode_masks(np.asarray(im), modality)


def finding_masks(case) -> dict[str, np.ndarray]:
    """The case's finding masks; cardiomegaly (drawn as the heart, no mask of its own) gets the heart."""
    masks = dict(case.masks)
    present = {f.name for f in case.truth.findings}
    heart = getattr(case, "anatomy", {}).get("heart")
    if "cardiomegaly" in present and "cardiomegaly" not in masks and heart is not None:
        masks["cardiomegaly"] = heart  # the enlarged silhouette is where the finding is
    return masks


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# One case


def render_job(job: CaseJob) -> dict:
    """Render, describe and write one case; returns its annotation entry (runs in workers too)."""
    from model.data.formulary import suggest_treatments
    from model.data.phantom import make_case
    from model.data.reports import write_reports

    case = make_case(job.seed, job.modality, size=job.size, case_id=job.case_id)
    truth = case.truth
    reports = write_reports(truth, np.random.default_rng([job.seed, 1]))
    treatments = suggest_treatments(truth.findings, truth.tumour, truth.context)
    label = truth.to_dict()
    label["treatments"] = [{"name": t.name, "reason": t.reason} for t in treatments]
    label["reports"] = reports

    out = Path(job.out)
    image = to_uint8(case.image)
    (out / "images" / f"{job.case_id}.png").write_bytes(_png_bytes(image))
    mask = encode_masks(finding_masks(case), job.modality, image.shape)
    (out / "masks" / f"{job.case_id}.png").write_bytes(_png_bytes(mask))
    (out / "labels" / f"{job.case_id}.json").write_text(json.dumps(label, indent=1, sort_keys=True) + "\n")
    return {
        "id": job.case_id,
        "report": reports["standard"],
        "image_path": [f"images/{job.case_id}.png"],
        "split": job.split,
        "modality": job.modality,
        "reports": reports,
    }


# ----------------------------------------------------------------------------------------------
# The whole set


def is_phantom_set(path: Path) -> bool:
    try:
        return json.loads((path / "dataset.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def prepare_out_dir(out: Path, overwrite: bool = False) -> None:
    """Make ``out`` ready: empty, or a previous phantom set (cleared), or ``overwrite`` given.

    Only the paths this generator writes are removed; anything else in ``out`` is left alone.
    """
    if out.exists() and not out.is_dir():
        raise DatasetDirError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_phantom_set(out) and not overwrite:
        raise DatasetDirError(
            f"{out} is not empty and is not a phantom set written by `{GENERATOR}` (no dataset.json "
            "of ours): refusing to write into it. Choose an empty or new folder, or pass --overwrite "
            f"to replace {', '.join(OWNED_DIRS + OWNED_FILES)} there."
        )
    for d in OWNED_DIRS:
        shutil.rmtree(out / d, ignore_errors=True)
    for f in OWNED_FILES:
        (out / f).unlink(missing_ok=True)
    for d in OWNED_DIRS:
        (out / d).mkdir(parents=True, exist_ok=True)


def plan_jobs(
    out: Path, n_cxr: int, n_ct: int, seed: int, size: int, val_frac: float, test_frac: float
) -> list[CaseJob]:
    jobs = []
    for modality, n in (("CXR", n_cxr), ("CT", n_ct)):
        splits = assign_splits(n, seed, modality, val_frac, test_frac)
        for i in range(n):
            jobs.append(
                CaseJob(
                    case_id(modality, i), modality, case_seed(seed, modality, i), splits[i], size, str(out)
                )
            )
    return jobs


def generate_dataset(
    out: str | Path,
    n_cxr: int,
    n_ct: int,
    seed: int = 0,
    size: int = 256,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a phantom set to ``out``; returns the provenance written to ``dataset.json``."""
    out = Path(out)
    if n_cxr < 0 or n_ct < 0 or n_cxr + n_ct == 0:
        raise ValueError("ask for at least one phantom (--n-cxr / --n-ct)")
    jobs = plan_jobs(out, n_cxr, n_ct, seed, size, val_frac, test_frac)
    prepare_out_dir(out, overwrite)
    provenance = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "complete": False,  # flipped when every file is written
    }
    (out / "dataset.json").write_text(json.dumps(provenance, indent=1) + "\n")

    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="phantoms", unit="case", disable=not progress)
    entries = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for entry in pool.imap(render_job, jobs, chunksize=4):
                entries.append(entry)
                bar.update()
    else:
        for job in jobs:
            entries.append(render_job(job))
            bar.update()
    bar.close()
    seconds = time.perf_counter() - t0

    annotation = {split: [e for e in entries if e["split"] == split] for split in ("train", "val", "test")}
    (out / "annotation.json").write_text(json.dumps(annotation, indent=1) + "\n")
    counts = {
        m: {s: sum(e["modality"] == m and e["split"] == s for e in entries) for s in annotation}
        for m in MODALITY_CODE
    }
    provenance.update(
        complete=True,
        n_cxr=n_cxr,
        n_ct=n_ct,
        counts=counts,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=round(seconds, 2),
        phantoms_per_s=round(len(jobs) / max(seconds, 1e-9), 2),
        workers=workers,
    )
    (out / "dataset.json").write_text(json.dumps(provenance, indent=1) + "\n")
    return provenance
