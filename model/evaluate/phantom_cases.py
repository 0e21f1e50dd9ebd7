"""A run's phantom split rebuilt in memory from its seed (no files needed).

``meddistill generate-data`` renders case ``i`` of a modality from ``case_seed(seed, modality, i)``
and assigns splits with a seeded permutation, so the validation and test phantoms of any run can be
re-rendered bit for bit (the PNG's 8-bit quantisation included) from the run's sizes and seed. The
shipped checkpoints come from ``meddistill pipeline`` with the default profile (2400 CXR, 1000 CT,
seed 0, 10 % validation, 10 % test); their run folder is not in the repository, this module is how
benchmarks and checks see the same cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.types import Study

#: the split layout of the shipped checkpoints' run (``meddistill pipeline`` default profile)
SHIPPED_RUN = {"n_cxr": 2400, "n_ct": 1000, "seed": 0, "size": 256, "val_frac": 0.1, "test_frac": 0.1}


@dataclass
class SplitCase:
    """One phantom of a split: the study as the dataset would load it, its masks and its truth."""

    study: Study  # pixels quantised to 8 bits, as read back from the dataset's PNG
    masks: dict[str, np.ndarray]  # finding name (cardiomegaly = heart) or "tumour" -> (H, W) bool
    case: object  # the PhantomCase (truth, anatomy, geometry)

    @property
    def truth(self):
        return self.case.truth


def split_jobs(split: str, modality: str | None = None, run: dict | None = None) -> list:
    """The ``CaseJob``s of one split of a run (default: the shipped run), in case-index order."""
    from model.data.generate import plan_jobs

    r = {**SHIPPED_RUN, **(run or {})}
    jobs = plan_jobs(Path("."), r["n_cxr"], r["n_ct"], r["seed"], r["size"], r["val_frac"], r["test_frac"])
    return [j for j in jobs if j.split == split and (modality is None or j.modality == modality)]


def split_cases(
    split: str, modality: str | None = None, limit: int | None = None, run: dict | None = None
) -> Iterator[SplitCase]:
    """Render the cases of a split (at most ``limit`` per call, in case-index order)."""
    from model.data.generate import finding_masks, to_uint8
    from model.data.phantom import make_case

    jobs = split_jobs(split, modality, run)
    for job in jobs[:limit] if limit is not None else jobs:
        case = make_case(job.seed, job.modality, size=job.size, case_id=job.case_id)
        pixels = to_uint8(case.image).astype(np.float32) / 255.0  # what the PNG holds
        study = Study(pixels=pixels, modality=job.modality, source=job.case_id)
        yield SplitCase(study=study, masks=finding_masks(case), case=case)
