"""Rebuild an evaluated phantom case from its evaluation record instead of shipping the data set.

Phantoms are seed-deterministic: case ``i`` of a modality in a set generated with ``--seed S`` is
``make_case(case_seed(S, modality, i))`` and its reports come from ``default_rng([case_seed, 1])``
(``model/data/generate.py``). An evaluation result records the set's provenance in
``data.dataset`` (seed, image size) and each case's ``seed`` (docs/eval_schema.md); results written
before those fields existed are rebuilt from the case id and the ``generate-data`` defaults, and the
rebuilt truth is checked against the truth the result recorded, so a wrong guess is refused, never
shown.

    rebuilt = rebuild_case(result, result["cases"][0])
    rebuilt.png()        # the 8-bit PNG ``generate-data`` wrote for this case (same pixels)
    rebuilt.mask_png()   # its bit-mask PNG
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.data.generate import (
    GENERATOR,
    MODALITY_CODE,
    case_seed,
    encode_masks,
    finding_masks,
    to_uint8,
)
from model.data.phantom import PhantomCase, make_case
from model.types import CaseTruth

#: what ``meddistill generate-data`` uses when not told otherwise (results without ``data.dataset``)
DEFAULT_SEED = 0  # --seed default (the pipeline passes its own --seed, default 0, too)
DEFAULT_SIZE = 256  # --size default
CASE_ID = re.compile(r"^(cxr|ct)_(\d+)$")  # generate.case_id: "<modality>_<index:05d>"


class RebuildError(ValueError):
    """A case cannot be rebuilt; ``str(err)`` is a user-facing sentence."""


@dataclass
class RebuiltCase:
    """One phantom rebuilt from its seed: what ``generate-data`` wrote for it, in memory."""

    case: PhantomCase  # pixels (float), masks, truth, anatomy
    seed: int  # the case's own seed (generate.case_seed)
    reports: dict[str, str]  # detail -> reference report
    treatments: list[dict] = field(default_factory=list)  # [{name, reason}] ground-truth rulebook
    dataset_seed: int | None = None  # the set's --seed, when the case was rebuilt from its id
    assumed: bool = False  # True = seed/size were the generate-data defaults, not recorded

    @property
    def truth(self) -> CaseTruth:
        return self.case.truth

    @property
    def image(self) -> np.ndarray:
        """(H, W) uint8, exactly the pixels of ``images/ID.png``."""
        return to_uint8(self.case.image)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """Finding (or "tumour") -> bool mask, as ``masks/ID.png`` decodes (cardiomegaly = heart)."""
        return {k: np.asarray(v, dtype=bool) for k, v in finding_masks(self.case).items()}

    def png(self) -> bytes:
        return _png(self.image)

    def mask_png(self) -> bytes:
        image = self.image
        return _png(encode_masks(finding_masks(self.case), self.truth.modality, image.shape))


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False)  # as generate._png_bytes
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# What an evaluation records


def dataset_provenance(data_dir: str | Path) -> dict | None:
    """The rebuild-relevant part of ``DIR/dataset.json`` (None when it is not a phantom set)."""
    try:
        d = json.loads((Path(data_dir) / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("generator") != GENERATOR:
        return None
    return {k: d.get(k) for k in ("generator", "version", "seed", "size")}


def parse_case_id(case_id: str) -> tuple[str, int] | None:
    """``"cxr_00041"`` -> ``("CXR", 41)``; None for ids ``generate-data`` does not write."""
    m = CASE_ID.match(str(case_id))
    if not m:
        return None
    modality = m.group(1).upper()
    return (modality, int(m.group(2))) if modality in MODALITY_CODE else None


def seed_from_id(dataset_seed: int, case_id: str) -> int | None:
    """The case seed of ``case_id`` in a set generated with ``dataset_seed`` (None: not a phantom id)."""
    parsed = parse_case_id(case_id)
    return None if parsed is None else case_seed(int(dataset_seed), *parsed)


def rebuildable(case: dict) -> bool:
    """True when ``case`` (an evaluation record) is a phantom with a recorded or derivable seed."""
    if case.get("seed") is not None:
        return True
    phantom = str(case.get("source") or "phantom").startswith("phantom")
    return phantom and parse_case_id(case.get("id", "")) is not None


# ----------------------------------------------------------------------------------------------
# Rebuilding


def rebuild_case(result: dict, case: dict) -> RebuiltCase:
    """Rebuild ``case`` (one of ``result["cases"]``): image, masks, truth, reports, treatments.

    Raises RebuildError (a sentence naming the case and what to do) when the case is not a phantom,
    or the rebuilt truth differs from the truth the evaluation recorded.
    """
    from model.data.formulary import suggest_treatments
    from model.data.reports import write_reports

    cid = case.get("id", "?")
    name = result.get("name") or "this evaluation"
    recorded = (result.get("data") or {}).get("dataset") or {}
    size = int(recorded.get("size") or DEFAULT_SIZE)
    dataset_seed = recorded.get("seed")
    assumed = case.get("seed") is None and dataset_seed is None
    if case.get("seed") is not None:
        seed = int(case["seed"])
    else:
        seed = seed_from_id(DEFAULT_SEED if dataset_seed is None else dataset_seed, cid)
    parsed = parse_case_id(cid)
    modality = case.get("modality") or (parsed[0] if parsed else None)
    if seed is None or modality not in MODALITY_CODE:
        raise RebuildError(
            f"Case {cid} of {name} is not a generated phantom (its id and record carry no seed), so its "
            "image cannot be rebuilt: put the evaluation's data folder back at the path in its "
            "`data.dir` to see it."
        )
    built = make_case(seed, modality, size=size, case_id=cid)
    if not _matches(built.truth, case.get("truth") or {}):
        how = "the generate-data defaults (seed 0, 256 px)" if assumed else f"seed {seed}"
        raise RebuildError(
            f"Case {cid} of {name} could not be rebuilt: the phantom drawn from {how} does not match the "
            "ground truth the evaluation recorded (the set was generated with another --seed or "
            "version). Re-run `meddistill evaluate` to record the seed, or put the data folder back."
        )
    reports = write_reports(built.truth, np.random.default_rng([seed, 1]))
    treatments = suggest_treatments(built.truth.findings, built.truth.tumour, built.truth.context)
    return RebuiltCase(
        case=built,
        seed=seed,
        reports=reports,
        treatments=[{"name": t.name, "reason": t.reason} for t in treatments],
        dataset_seed=None if case.get("seed") is not None else (DEFAULT_SEED if assumed else dataset_seed),
        assumed=assumed,
    )


def _matches(truth: CaseTruth, recorded: dict) -> bool:
    """Does the rebuilt truth equal what the evaluation recorded (structured truth, else names)?"""
    if recorded.get("structured"):
        return _canonical(truth.to_dict()) == _canonical(recorded["structured"])
    if "findings" in recorded and sorted(recorded["findings"] or []) != sorted(
        f.name for f in truth.findings if f.name != "tumour"
    ):
        return False
    return recorded.get("tumour") is None or recorded["tumour"] == truth.tumour


def _canonical(d: dict) -> str:
    """JSON text with sorted keys (tuples and lists compare equal, floats as the JSON wrote them)."""
    return json.dumps(json.loads(json.dumps(d)), sort_keys=True)
