"""Training samples for an update: reviewed cases from the store, and replay of the original phantoms.

A reviewed case becomes a :class:`~model.data.sources.Sample` whose labels are the reviewer's (a finding
the review does not mention stays unknown, never negative) and whose report is the reviewer's text. The
replay set is the teacher's own training data re-rendered from seeds (``model.evaluate.phantom_cases``:
the shipped run's train split), so fine-tuning on a few dozen corrections does not forget the rest.
No file is read or written for either: pixels come from the store or from the phantom renderer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.data.sources import Sample
from model.types import FINDINGS, TREATMENTS, TUMOUR_CLASSES, TUMOUR_SUBTYPES

REVIEW_SOURCE = "review"  # Sample.source of a reviewed case (the trainer treats it like a real image)


def review_targets(review) -> tuple[np.ndarray, int]:
    """(findings (7,) float32 with NaN = not reviewed, tumour index or -1) from a Review's labels."""
    findings = np.full(len(FINDINGS), np.nan, dtype=np.float32)
    tumour = -1
    if review.modality == "CXR":
        for f in review.findings:
            if f.name in FINDINGS:
                findings[FINDINGS.index(f.name)] = float(bool(f.present))
    elif review.tumour in TUMOUR_CLASSES:
        tumour = TUMOUR_CLASSES.index(review.tumour)
    return findings, tumour


def review_sample(review, store) -> Sample:
    """One reviewed case as a training sample (pixels loaded from the store when the set is built)."""
    findings, tumour = review_targets(review)
    text = (review.report_text or "").strip()
    sha = review.image_sha256
    return Sample(
        id=f"review:{review.id}",
        split="train",
        modality=review.modality,
        source=REVIEW_SOURCE,
        image_path=None,
        report=text or None,
        # the reviewer wrote one text: it stands for every detail level (no brief/detailed of its own)
        reports={},
        report_origin="written" if text else "none",
        finding_targets=findings,
        tumour_target=tumour,
        loader=lambda: np.asarray(store.load_pixels(sha), dtype=np.float32),
    )


def phantom_sample(job) -> Sample:
    """The sample ``PhantomSource`` would read for a generated case, rendered from its seed instead."""
    from model.data.formulary import suggest_treatments
    from model.data.generate import to_uint8
    from model.data.phantom import make_case
    from model.data.reports import write_reports

    case = make_case(job.seed, job.modality, size=job.size, case_id=job.case_id)
    truth = case.truth
    reports = write_reports(truth, np.random.default_rng([job.seed, 1]))
    given = {t.name for t in suggest_treatments(truth.findings, truth.tumour, truth.context)}
    pixels = to_uint8(case.image).astype(np.float32) / 255.0  # what the dataset's PNG holds
    return Sample(
        id=job.case_id,
        split=job.split,
        modality=truth.modality,
        source=f"phantom_{truth.modality.lower()}",
        image_path=None,
        report=reports["standard"],
        reports=dict(reports),
        report_origin="written",
        finding_targets=truth.finding_vector()
        if truth.modality == "CXR"
        else np.full(len(FINDINGS), np.nan, dtype=np.float32),  # CXR findings are undefined on CT
        tumour_target=TUMOUR_CLASSES.index(truth.tumour) if truth.modality == "CT" else -1,
        subtype_target=TUMOUR_SUBTYPES.index(truth.tumour_subtype)
        if truth.tumour_subtype in TUMOUR_SUBTYPES
        else -1,
        treatment_targets=np.asarray([float(t in given) for t in TREATMENTS], dtype=np.float32),
        context=truth.context,
        truth=truth,
        loader=lambda: pixels,
    )


def replay_samples(n: int, seed: int, split: str = "train", run: dict | None = None) -> list[Sample]:
    """``n`` phantoms of a split of the original run (default: the shipped run), chosen by ``seed``."""
    from model.evaluate.phantom_cases import split_jobs

    jobs = split_jobs(split, run=run)
    if n <= 0 or not jobs:
        return []
    order = np.random.default_rng([seed, 4242]).permutation(len(jobs))[: min(n, len(jobs))]
    return [phantom_sample(jobs[i]) for i in sorted(order.tolist())]


def split_folds(ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """``ids`` in ``k`` folds of near-equal size (seeded shuffle; every id in exactly one fold)."""
    ordered = sorted(ids)
    order = np.random.default_rng([seed, 77]).permutation(len(ordered))
    k = max(1, min(k, len(ordered)))
    return [sorted(ordered[i] for i in order[f::k]) for f in range(k)]


def review_from_phantom(case, report: str, model_version: int | None = None):
    """(Review, pixels) a perfect reviewer would save for a phantom: every finding marked from its truth,
    the tumour class, the reference report. Benchmarks and tests plant reviewed cases with it."""
    from model.data.generate import to_uint8
    from model.review.pixels import pixel_sha256
    from model.review.types import FindingReview, Review, now_iso

    truth = case.truth
    pixels = to_uint8(case.image).astype(np.float32) / 255.0
    present = {f.name: f for f in truth.findings}
    findings = ()
    if truth.modality == "CXR":
        findings = tuple(
            FindingReview(n, True, present[n].side, present[n].severity) if n in present
            else FindingReview(n, False)
            for n in FINDINGS
        )  # fmt: skip
    review = Review(
        image_sha256=pixel_sha256(pixels),
        modality=truth.modality,
        findings=findings,
        tumour=truth.tumour if truth.modality == "CT" else None,
        report_text=report,
        note="",
        outputs={},
        model_version=model_version,
        created_at=now_iso(),
        source="phantom",
    )
    return review, pixels
