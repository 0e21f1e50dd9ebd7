"""ReportDataset items, caching and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.data.dataset import IGNORE_INDEX, ReportDataset, augment_image
from model.data.sources import ClassFolderSource, NIHSource, Sample
from model.types import CONTEXT_DIM, DETAIL_LEVELS, FINDINGS, TREATMENTS, PatientContext

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def _samples(tmp_path: Path) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i, (mode, size) in enumerate([("L", (40, 30)), ("RGB", (64, 64)), ("RGBA", (50, 70))]):
        path = tmp_path / f"{i}.png"
        arr = rng.integers(0, 255, size=(size[1], size[0], len(mode)), dtype=np.uint8).squeeze()
        Image.fromarray(arr, mode=mode).save(path)
        ct = i == 2
        findings = np.full(len(FINDINGS), np.nan, np.float32)
        if not ct:
            findings[:] = 0
            findings[1] = 1
            findings[4] = np.nan if i == 1 else 0
        out.append(
            Sample(
                id=f"s{i}",
                split="train",
                modality="CT" if ct else "CXR",
                source="ct" if ct else "cxr",
                image_path=str(path),
                report=None if i == 1 else f"standard {i}",
                reports={} if i == 1 else {d: f"{d} {i}" for d in DETAIL_LEVELS},
                report_origin="none" if i == 1 else "written",
                finding_targets=findings,
                tumour_target=2 if ct else -1,
                subtype_target=0 if ct else -1,
                treatment_targets=np.zeros(len(TREATMENTS), np.float32),
                context=PatientContext(age=50, sex="F"),
            )
        )
    return out


def test_items_shapes_dtypes_and_masks(tmp_path):
    ds = ReportDataset(_samples(tmp_path), image_size=32, detail="standard")
    assert len(ds) == 3
    for i in range(3):
        it = ds[i]
        assert it["image"].shape == (1, 32, 32) and it["image"].dtype == torch.float32
        assert 0.0 <= it["image"].min() and it["image"].max() <= 1.0
        assert it["findings"].shape == (len(FINDINGS),) and it["findings_mask"].dtype == torch.bool
        assert it["treatments"].shape == (len(TREATMENTS),) and it["treatments_mask"].all()
        assert it["context"].shape == (CONTEXT_DIM,)
        assert it["tumour"].dtype == torch.long and it["detail"] == "standard"
    cxr, no_report, ct = ds[0], ds[1], ds[2]
    assert cxr["findings_mask"].all() and cxr["findings"][1] == 1 and cxr["tumour"] == IGNORE_INDEX
    assert cxr["report"] == "standard 0" and cxr["has_report"]
    assert not no_report["findings_mask"][4] and no_report["findings_mask"].sum() == len(FINDINGS) - 1
    assert no_report["report"] == "" and not no_report["has_report"]
    assert not ct["findings_mask"].any() and ct["tumour"] == 2 and ct["subtype"] == 0


def test_random_detail_cache_and_augment_are_reproducible(tmp_path):
    samples = _samples(tmp_path)
    a = ReportDataset(samples, 24, detail="random", seed=1, augment=True)
    b = ReportDataset(samples, 24, detail="random", seed=1, augment=True, cache=True)
    for i in range(3):
        assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["detail"] == b[i]["detail"]
    assert len(b._images) == 3
    details = set()
    for epoch in range(12):
        a.set_epoch(epoch)
        details.add(a[0]["detail"])
    assert details == set(DETAIL_LEVELS)
    plain = ReportDataset(samples, 24, detail="standard")
    assert not torch.equal(plain[0]["image"], a[0]["image"])  # augmentation changed something
    with pytest.raises(ValueError):
        ReportDataset(samples, 24, detail="verbose")


def test_augment_keeps_range_and_shape():
    x = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    y = augment_image(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1


@needs_shared
def test_real_sets_become_one_grayscale_size():
    """RGBA CT slices and RGB NIH thumbnails all load as (1, S, S); the CT class shortcut is visible."""
    ct = ClassFolderSource(SHARED / "chest_ct").samples("valid")
    nih = NIHSource(SHARED / "nih1000" / "labels.csv", SHARED / "nih1000", name="nih1000").samples("val")[:8]
    ds = ReportDataset(ct + nih, image_size=64, detail="standard")
    means = {"none": [], "malignant": []}
    for i in range(len(ds)):
        it = ds[i]
        assert it["image"].shape == (1, 64, 64)
        if it["modality"] == "CT":
            means["none" if it["tumour"] == 0 else "malignant"].append(float(it["image"].mean()))
    assert means["none"] and means["malignant"]
