"""Interactive reports (issue 14, Deliver 6): a report regenerated from labels the user edited.

The report decoder attends to the image patches *and* to an embedding of the heads' outputs
(``ReportModel.build_memory``). Training replaced those head values with the ground-truth labels for
a share of the batches (``TrainConfig.label_cond_p``), and serving feeds the heads' thresholded calls
(``Predictor.memory_probs``, issue 10). So the same slot takes the user's labels: CXR findings as
0 / 1 (every finding, present or absent), CT as the one-hot tumour class; the other part stays the
head's (NaN in ``memory_probs``). Nothing is retrained; the decoder writes what the labels say as
well as it learnt to, and :func:`regenerate_report` says where its text still contradicts them
(``RegeneratedReport.conflicts``, the consistency check of ``model/evaluate/consistency.py``).

"More detail" on one finding (:func:`finding_detail`): the decoder writes a *detailed* report
conditioned on that finding alone (CXR: only it present; CT: the tumour class as set), and the
sentence(s) that state that finding, found by the report labeler, are taken from it.
:func:`splice_sentences` puts them in place of the sentences about that finding in a report (or
after the last sentence stating a finding when the report had none about it).

Side and severity are recorded in a review but not conditioned on: the memory holds presence only.

Costs: one encoder pass per (model, study, context) (:func:`encode_study`, reusable across edits),
then one decode per edit; ``benchmarks/bench_interactive.py`` measures both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from model.types import FINDINGS, TUMOUR_CLASSES, PatientContext, Prediction, ReportStyle, Study

#: what "more detail" decodes: the detailed control token and room for a full detailed report
DETAIL_STYLE = ReportStyle(detail="detailed", max_new_tokens=128)
#: report-labeler labels of a CT tumour class ("none" is stated by denying both)
_TUMOUR_LABELS = ("tumour_benign", "tumour_malignant")

if TYPE_CHECKING:  # torch is imported where it runs: the Compare page imports ReportLabels before any
    import torch  # model loads, and must paint without waiting for torch (issue 13)


# ----------------------------------------------------------------------------------------------
# What the report should state


@dataclass(frozen=True)
class ReportLabels:
    """The labels a report is conditioned on: CXR findings present (every other finding absent), or the
    CT tumour class. Frozen and hashable: a cache key as it is."""

    modality: str  # "CXR" | "CT"
    present: tuple[str, ...] = ()  # FINDINGS names present (CXR), in FINDINGS order
    tumour: str | None = None  # one of TUMOUR_CLASSES (CT)

    def __post_init__(self):
        unknown = [n for n in self.present if n not in FINDINGS]
        if unknown:
            raise ValueError(f"unknown finding(s) {unknown}; choose from {FINDINGS}")
        if self.tumour is not None and self.tumour not in TUMOUR_CLASSES:
            raise ValueError(f"unknown tumour class {self.tumour!r}; choose one of {TUMOUR_CLASSES}")
        if self.modality == "CT" and self.tumour is None:
            raise ValueError("a CT report needs a tumour class (none, benign or malignant)")
        object.__setattr__(self, "present", tuple(n for n in FINDINGS if n in set(self.present)))

    @classmethod
    def from_prediction(cls, pred: Prediction, thresholds: Mapping[str, float] | None = None) -> ReportLabels:
        """What the heads call (the labels a served report is conditioned on): findings at ``thresholds``
        (the card's, ``Predictor.finding_thresholds``; 0.5 where missing), the argmax tumour class."""
        thresholds = thresholds or {}
        if pred.modality == "CT":
            return cls("CT", tumour=max(TUMOUR_CLASSES, key=lambda c: pred.tumour.get(c, float("-inf"))))
        present = tuple(n for n in FINDINGS if pred.findings.get(n, 0.0) >= thresholds.get(n, 0.5))
        return cls("CXR", present=present)

    def with_finding(self, name: str, present: bool) -> ReportLabels:
        """These labels with one CXR finding set present / absent."""
        kept = set(self.present) - {name}
        return replace(self, present=tuple(kept | ({name} if present else set())))

    def with_tumour(self, tumour: str) -> ReportLabels:
        return replace(self, tumour=tumour)

    def only(self, name: str) -> ReportLabels:
        """The labels "more detail" decodes under: CXR only ``name`` present; CT unchanged."""
        return self if self.modality == "CT" else replace(self, present=(name,))

    def memory_probs(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(1, n_findings + n_tumour) values for ``ReportModel.build_memory``: NaN keeps the head's."""
        import torch

        nan = float("nan")
        if self.modality == "CT":
            findings = [nan] * len(FINDINGS)
            tumour = [float(c == self.tumour) for c in TUMOUR_CLASSES]
        else:
            findings = [float(n in self.present) for n in FINDINGS]
            tumour = [nan] * len(TUMOUR_CLASSES)
        return torch.tensor([findings + tumour], dtype=torch.float32, device=device)

    def calls(self) -> dict[str, bool]:
        """Report-labeler label -> present, in the layout of ``consistency.head_calls``."""
        if self.modality == "CT":
            return {lab: lab == f"tumour_{self.tumour}" for lab in _TUMOUR_LABELS}
        return {n: n in self.present for n in FINDINGS}

    def to_dict(self) -> dict:
        return {"modality": self.modality, "present": list(self.present), "tumour": self.tumour}


# ----------------------------------------------------------------------------------------------
# Regeneration


@dataclass
class EncodedStudy:
    """One model's encoder features and heads for one study and context: computed once, decoded often."""

    model_id: str
    modality: str
    features: torch.Tensor  # (1, C, h, w)
    heads: object  # model.networks HeadOutput
    encode_ms: float


@dataclass(frozen=True)
class RegeneratedReport:
    """One model's report written from ``labels``."""

    model_id: str
    labels: ReportLabels
    detail: str
    report: str
    tokens: tuple[str, ...]
    token_probs: tuple[float, ...]
    truncated: bool
    #: labels the text contradicts: "denied:NAME" (set present, text denies it), "asserted:NAME" (set
    #: absent, text states it); see model/evaluate/consistency.py
    conflicts: tuple[str, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)  # "encode" (0 when reused), "decode", "total"
    edits: str = ""  # what following the labels changed (model/follow_labels.py), "" = nothing
    location_grounded: bool = False  # side / zone words read from the lesion map (model/ground_location.py)
    location_edits: tuple[str, ...] = ()  # the location phrases that grounding changed


def encode_study(predictor, study: Study, context: PatientContext | None = None) -> EncodedStudy:
    """The encoder and heads of ``predictor`` on ``study`` (reuse it across edits of the same study)."""
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        features = predictor.model.forward_features(predictor.image_tensor(study))  # (1, C, h, w)
        heads = predictor.model.forward_heads(features, predictor.context_tensor(context))
    return EncodedStudy(
        model_id=predictor.model_id,
        modality=study.modality,
        features=features,
        heads=heads,
        encode_ms=(time.perf_counter() - t0) * 1e3,
    )


def regenerate_report(
    predictor,
    study: Study,
    labels: ReportLabels,
    style: ReportStyle | None = None,
    context: PatientContext | None = None,
    encoded: EncodedStudy | None = None,
) -> RegeneratedReport:
    """``predictor``'s report on ``study`` with the decoder conditioned on ``labels`` instead of its heads.

    ``encoded`` (from :func:`encode_study` on the same predictor, study and context) skips the encoder.
    """
    import torch

    from model.networks.generation import decode, end_on_sentence, token_budget
    from model.networks.tokenizer import detokenize

    if labels.modality != study.modality:
        raise ValueError(f"labels for {labels.modality} given for a {study.modality} study")
    if encoded is not None and (encoded.model_id != predictor.model_id or encoded.modality != study.modality):
        raise ValueError("the encoded study belongs to another model or modality")
    style = style or ReportStyle()
    t0 = time.perf_counter()
    reused = encoded is not None
    encoded = encoded or encode_study(predictor, study, context)
    t1 = time.perf_counter()
    with torch.inference_mode():
        prompts = predictor.model.prompts(style.detail, [study.modality], 1)  # (1, 2)
        memory = predictor.model.build_memory(
            encoded.features, encoded.heads, labels.memory_probs(predictor.device)
        )
        ids, probs = decode(predictor.model.decoder, memory, prompts, style, predictor._period)
    budget = token_budget(style, predictor.cfg.max_len, prompts.shape[1])
    row_ids, row_probs, truncated = end_on_sentence(ids[0], probs[0], budget, style, predictor._period)
    tokens = tuple(predictor._words[j] for j in row_ids)
    row_probs = [float(p) for p in row_probs]
    edits = ""
    if getattr(predictor, "follow_heads", False):  # the served rule: the report follows its labels
        from model.follow_labels import follow_labels

        followed = follow_labels(
            predictor, study.modality, encoded.features, encoded.heads, tokens, row_probs, labels, style
        )
        tokens, row_probs, edits = followed.tokens, list(followed.token_probs), followed.describe()
    grounded = None
    if hasattr(predictor, "ground_report_locations"):  # the served rule: locations from the lesion map
        rows, row_p = [list(tokens)], [list(row_probs)]
        grounded = predictor.ground_report_locations(encoded.heads, [study.modality], rows, row_p)[0]
        tokens, row_probs = tuple(rows[0]), row_p[0]
    report = detokenize(list(tokens))
    t2 = time.perf_counter()
    return RegeneratedReport(
        model_id=predictor.model_id,
        labels=labels,
        detail=style.detail,
        report=report,
        tokens=tokens,
        token_probs=tuple(float(p) for p in row_probs),
        truncated=truncated,
        conflicts=tuple(label_conflicts(labels, report)),
        edits=edits,
        location_grounded=grounded is not None,
        location_edits=tuple(grounded.changed) if grounded is not None else (),
        latency_ms={
            "encode": 0.0 if reused else round((t1 - t0) * 1e3, 3),
            "decode": round((t2 - t1) * 1e3, 3),
            "total": round((t2 - t0) * 1e3, 3),
        },
    )


def label_conflicts(labels: ReportLabels, report: str) -> list[str]:
    """Where ``report`` contradicts ``labels``: "denied:NAME" / "asserted:NAME" (consistency.py)."""
    from model.evaluate.clinical import default_labeler
    from model.evaluate.consistency import case_consistency, report_calls

    c = case_consistency(labels.calls(), report_calls(labels.modality, default_labeler()(report)))
    return [f"denied:{n}" for n in c["denied"]] + [f"asserted:{n}" for n in c["asserted"]]


# ----------------------------------------------------------------------------------------------
# More detail on one finding


@dataclass(frozen=True)
class FindingDetail:
    """The detailed sentence(s) one model writes about one finding."""

    model_id: str
    finding: str  # a FINDINGS name, or "tumour" on CT
    sentences: tuple[str, ...]  # empty when the detailed report states nothing about it
    source_report: str  # the whole detailed report they were taken from
    latency_ms: dict[str, float] = field(default_factory=dict)


def finding_detail(
    predictor,
    study: Study,
    labels: ReportLabels,
    finding: str,
    context: PatientContext | None = None,
    encoded: EncodedStudy | None = None,
) -> FindingDetail:
    """``predictor``'s detailed sentence(s) about ``finding``: a "detailed" report decoded with only that
    finding present (CXR) or the set tumour class (CT, ``finding`` = "tumour"), then the sentences the
    labeler reads as stating it."""
    if study.modality == "CT":
        if finding != "tumour":
            raise ValueError("on CT, more detail is about the tumour (finding='tumour')")
        if labels.tumour == "none":
            raise ValueError("no tumour is marked: set the tumour class to benign or malignant first")
    elif finding not in labels.present:
        raise ValueError(f"{finding!r} is not marked present: mark it present to ask for more detail")
    regen = regenerate_report(predictor, study, labels.only(finding), DETAIL_STYLE, context, encoded)
    picked = sentences_about(regen.report, finding, labels)
    return FindingDetail(
        model_id=predictor.model_id,
        finding=finding,
        sentences=tuple(picked),
        source_report=regen.report,
        latency_ms=regen.latency_ms,
    )


def split_report(report: str) -> list[str]:
    """Sentences of a report, each with its final punctuation (the labeler's split, kept whole)."""
    from model.data.labeler import split_sentences

    out = []
    for s in split_sentences(report):
        out.append(s if s.endswith((".", "!", "?")) else s + ".")
    return out


def _states(sentence: str, finding: str, labels: ReportLabels) -> bool:
    from model.evaluate.clinical import default_labeler

    found = default_labeler()(sentence)
    if finding == "tumour":
        wanted = f"tumour_{labels.tumour}"
        if labels.tumour == "none":  # "no tumour / mass is seen": both classes denied
            return any(found.get(lab) == "negative" for lab in _TUMOUR_LABELS)
        return found.get(wanted) in ("positive", "uncertain")
    return found.get(finding) in ("positive", "uncertain")


def sentences_about(report: str, finding: str, labels: ReportLabels) -> list[str]:
    """The sentences of ``report`` that state ``finding`` (present or uncertain; CT: the tumour class)."""
    return [s for s in split_report(report) if _states(s, finding, labels)]


def splice_sentences(report: str, finding: str, sentences: Iterable[str], labels: ReportLabels) -> str:
    """``report`` with its sentences about ``finding`` replaced by the detailed ``sentences``.

    Only sentences about that finding alone are replaced, in order (a findings sentence by the detailed
    findings sentence, an impression by the impression); a sentence that also states another finding
    ("effusion and enlarged heart") is kept whole. Extra detailed sentences follow the last replaced one,
    unless such a shared sentence already mentions the finding; extra old ones go. A report that does not
    state the finding at all gets the sentences after its last sentence stating a finding (else first).
    """
    new = [s for s in sentences if s]
    if not new:
        return report
    parts = split_report(report)
    names = ("tumour",) if labels.modality == "CT" else FINDINGS
    states = [{n for n in names if _states(s, n, labels)} for s in parts]
    alone = [i for i, st in enumerate(states) if st == {finding}]
    shared = [i for i, st in enumerate(states) if finding in st and len(st) > 1]
    if not alone:
        if shared:
            at = shared[0]
            return " ".join(parts[:at] + new[:1] + parts[at:])
        stating = [i for i, st in enumerate(states) if st]
        at = stating[-1] + 1 if stating else 0
        return " ".join(parts[:at] + new + parts[at:])
    out = list(parts)
    for k, i in enumerate(alone):
        out[i] = new[k] if k < len(new) else ""
    extra = new[len(alone) :]
    if extra and not shared:
        out[alone[-1]] = " ".join([out[alone[-1]], *extra])
    return " ".join(s for s in out if s)
