"""Core types shared by the CLI, the tests and the dashboard.

Plain dataclasses and fixed label spaces. Every other module speaks in these
types; extend them here rather than inventing parallel ones.

Label spaces are unified across data sources: a source supervises only what it
knows (see ``model/data/sources.py``), the rest is masked out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# ----------------------------------------------------------------------------------------------
# Label spaces (order matters: it is the order of the model heads' outputs)

#: Chest X-ray findings the findings head predicts (sigmoid, multi-label).
FINDINGS: tuple[str, ...] = (
    "cardiomegaly",
    "pleural_effusion",
    "pneumothorax",
    "nodule",  # nodule or mass
    "consolidation",
    "edema",  # pulmonary oedema
    "atelectasis",
)

#: Human-readable names of the findings, for reports and the UI.
FINDING_LABELS: dict[str, str] = {
    "cardiomegaly": "Cardiomegaly",
    "pleural_effusion": "Pleural effusion",
    "pneumothorax": "Pneumothorax",
    "nodule": "Nodule / mass",
    "consolidation": "Consolidation",
    "edema": "Pulmonary oedema",
    "atelectasis": "Atelectasis",
}

#: Tumour head classes on chest CT (softmax).
TUMOUR_CLASSES: tuple[str, ...] = ("none", "benign", "malignant")

#: Channels of a lesion map (phantom masks): every CXR finding, then the CT tumour. The stage-0 pre-training
#: mask head and the teacher's lesion head (``ModelConfig.head_pool == "lesion"``) predict these.
LESION_CHANNELS: tuple[str, ...] = (*FINDINGS, "tumour")

#: Side of the lesion-mask grid a TensorSet stores (max-pooled from the 256 px phantom masks; the loss pools
#: it again to the feature map: 28 divides into 14, 7 and 4x4-ish grids by adaptive max pooling).
LESION_GRID: int = 28

#: Malignant subtypes where a real CT set provides them (Kaggle chest CT).
TUMOUR_SUBTYPES: tuple[str, ...] = ("adenocarcinoma", "large_cell", "squamous")

#: The educational formulary: treatment head outputs (sigmoid, multi-label).
#: The rules that produce these labels live in ``model/data/formulary.py``.
TREATMENTS: tuple[str, ...] = (
    "beta_lactam_antibiotic",  # e.g. amoxicillin for pneumonia-like consolidation
    "macrolide_antibiotic",  # the alternative when allergic to penicillin
    "loop_diuretic",  # oedema / effusion with cardiomegaly (heart failure picture)
    "ace_inhibitor",  # cardiomegaly, unless pregnant or renal impairment
    "chest_drain_referral",  # pneumothorax / large effusion: no drug, procedure referral
    "oncology_referral",  # suspected malignancy: no drug, referral
    "respiratory_physiotherapy",  # atelectasis: physiotherapy, no drug
)

TREATMENT_LABELS: dict[str, str] = {
    "beta_lactam_antibiotic": "Beta-lactam antibiotic",
    "macrolide_antibiotic": "Macrolide antibiotic",
    "loop_diuretic": "Loop diuretic",
    "ace_inhibitor": "ACE inhibitor",
    "chest_drain_referral": "Referral: chest drain / procedure",
    "oncology_referral": "Referral: oncology / MDT",
    "respiratory_physiotherapy": "Respiratory physiotherapy",
}

DETAIL_LEVELS: tuple[str, ...] = ("brief", "standard", "detailed")
IGNORE_INDEX = -100  # a class-index target nobody knows (tumour, subtype, unscored tokens): masked out of losses
MODALITIES: tuple[str, ...] = ("CXR", "CT")

Modality = Literal["CXR", "CT"]
Detail = Literal["brief", "standard", "detailed"]

DISCLAIMER = (
    "For demonstration and teaching only. Not a medical device; not for clinical use. "
    "Models are trained on synthetic phantoms and small public datasets."
)


# ----------------------------------------------------------------------------------------------
# Images


@dataclass
class Study:
    """One image ready for a model.

    ``pixels`` are float32 H x W in [0, 1] after the modality LUT and windowing.
    ``raw`` keeps the pre-window values (e.g. Hounsfield units for CT) so the
    viewer can re-window without re-reading the file; None for plain images.
    ``meta`` holds de-identified display fields only (whitelisted by the loader).
    """

    pixels: np.ndarray  # (H, W) float32 in [0, 1]
    modality: Modality  # "CXR" | "CT"
    pixel_spacing: tuple[float, float] | None = None  # (row, col) in mm
    meta: dict[str, str] = field(default_factory=dict)  # de-identified display fields
    source: str = ""  # file name or sample id, for display
    sha256: str = ""  # of the raw bytes: cache key for predictions
    raw: np.ndarray | None = None  # (H, W) float32 pre-window values (HU for CT), optional
    window: tuple[float, float] | None = None  # (centre, width) applied to raw, if any
    n_frames: int = 1  # frames in the source file; pixels hold the chosen one
    warnings: tuple[str, ...] = ()  # best-effort notes for the user (e.g. modality guessed)
    #: what the grayscale pixels lose, recorded by the loader for the input guard: "colourfulness"
    #: (Hasler-Suesstrunk, 0 for gray), "height" / "width" of the source image
    image_stats: dict[str, float] = field(default_factory=dict)
    verdict: GuardVerdict | None = None  # the input guard's verdict (model/guard), once checked


#: what the input guard's modality classifier can say about an image
GUARD_CLASSES: tuple[str, ...] = ("CXR", "CT", "neither")


@dataclass(frozen=True)
class GuardVerdict:
    """The input guard's decision on one study (or one model's view of it): see model/guard.

    ``reason`` is the sentence every surface (page, CLI text, JSON) shows: it names the file, the
    problem and what the user can do. ``check`` names the check that decided ("modality",
    "modality_mismatch", "ood:<model id>", or "" when every check passed).
    """

    accepted: bool
    reason: str  # one user-facing sentence ("" when accepted without remark)
    check: str  # the deciding check, "" when accepted
    score: float  # the deciding check's score (higher = less like a chest study)
    threshold: float  # refused when score > threshold
    detected_modality: str  # one of GUARD_CLASSES
    confidence: float  # probability of detected_modality
    claimed_modality: str | None = None  # what the DICOM header or the user said, if anything
    claim_source: str = ""  # "dicom" | "user" | "" (plain image, nothing claimed)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ----------------------------------------------------------------------------------------------
# Patient context (feeds the treatment head)

ALLERGIES: tuple[str, ...] = ("penicillin", "sulfonamide", "ace_inhibitor")


@dataclass(frozen=True)
class PatientContext:
    """Optional patient facts. None means unknown."""

    age: int | None = None
    sex: Literal["F", "M"] | None = None
    allergies: tuple[str, ...] = ()  # from ALLERGIES
    renal_impairment: bool | None = None
    pregnant: bool | None = None

    def to_vector(self) -> np.ndarray:
        """Fixed-length float vector for the treatment head (see CONTEXT_DIM)."""
        known_age = self.age is not None
        v = [
            (self.age or 0) / 100.0,
            float(known_age),
            float(self.sex == "F"),
            float(self.sex == "M"),
            *(float(a in self.allergies) for a in ALLERGIES),
            float(bool(self.renal_impairment)),
            float(bool(self.pregnant)),
        ]
        return np.asarray(v, dtype=np.float32)

    def to_dict(self) -> dict:
        return {
            "age": self.age,
            "sex": self.sex,
            "allergies": list(self.allergies),
            "renal_impairment": self.renal_impairment,
            "pregnant": self.pregnant,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> PatientContext:
        d = d or {}
        return cls(
            age=d.get("age"),
            sex=d.get("sex"),
            allergies=tuple(d.get("allergies") or ()),
            renal_impairment=d.get("renal_impairment"),
            pregnant=d.get("pregnant"),
        )


CONTEXT_DIM = 4 + len(ALLERGIES) + 2


# ----------------------------------------------------------------------------------------------
# Structured findings (ground truth of phantoms; input of reports.py and formulary.py)


@dataclass(frozen=True)
class Finding:
    """One present abnormality with its attributes.

    ``name`` is one of FINDINGS, or "tumour" on CT. Attributes are optional;
    reports.py writes what is known.
    """

    name: str
    side: Literal["left", "right", "bilateral"] | None = None
    zone: Literal["upper", "middle", "lower", "hilar", "basal", "apical", "diffuse"] | None = None
    size_mm: float | None = None  # longest diameter (nodule / tumour) or depth (effusion, pneumothorax)
    severity: Literal["mild", "moderate", "severe"] | None = None
    ratio: float | None = None  # cardiothoracic ratio for cardiomegaly
    character: str | None = None  # e.g. "calcified", "spiculated", "smooth", "lobulated"
    subtle: bool | None = None  # phantoms: drawn at the small / faint end of its range (kept, labelled)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        return cls(**d)


@dataclass(frozen=True)
class CaseTruth:
    """Exact ground truth of one study (phantoms) or what a real source knows."""

    case_id: str
    modality: Modality
    findings: tuple[Finding, ...] = ()  # present findings only; empty = normal study
    tumour: str | None = None  # one of TUMOUR_CLASSES on CT, None on CXR
    tumour_subtype: str | None = None  # one of TUMOUR_SUBTYPES when malignant and known
    context: PatientContext = field(default_factory=PatientContext)

    def finding_vector(self) -> np.ndarray:
        """Multi-hot over FINDINGS (CXR)."""
        present = {f.name for f in self.findings}
        return np.asarray([float(n in present) for n in FINDINGS], dtype=np.float32)

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "modality": self.modality,
            "findings": [f.to_dict() for f in self.findings],
            "tumour": self.tumour,
            "tumour_subtype": self.tumour_subtype,
            "context": self.context.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CaseTruth:
        return cls(
            case_id=d["case_id"],
            modality=d["modality"],
            findings=tuple(Finding.from_dict(f) for f in d.get("findings", [])),
            tumour=d.get("tumour"),
            tumour_subtype=d.get("tumour_subtype"),
            context=PatientContext.from_dict(d.get("context")),
        )


@dataclass(frozen=True)
class TreatmentSuggestion:
    """One formulary item with why it is (or would be) suggested."""

    name: str  # one of TREATMENTS
    probability: float  # model output; 1.0 for rulebook ground truth
    reason: str
    supported: bool | None = None  # the rulebook suggests it for the predicted findings (None: not checked)


#: A model's treatment suggestion is shown as a suggestion only when its probability is at least this
#: AND the rulebook supports it for the model's own findings (``TreatmentSuggestion.supported``); the
#: rest are "other suggestions", listed with their reason. 0.5 is the decision threshold the treatment
#: head is trained for (sigmoid, binary cross-entropy on the rulebook's multi-hot labels).
TREATMENT_THRESHOLD = 0.5


def split_treatments(
    treatments: list[TreatmentSuggestion], threshold: float = TREATMENT_THRESHOLD
) -> tuple[list[TreatmentSuggestion], list[TreatmentSuggestion]]:
    """``(shown, others)``: suggestions the rulebook supports at ``probability >= threshold``, and the
    rest, each list in the given order. The one rule the page, the CLI and the JSON share."""
    shown = [t for t in treatments if t.supported and t.probability >= threshold]
    others = [t for t in treatments if not (t.supported and t.probability >= threshold)]
    return shown, others


# ----------------------------------------------------------------------------------------------
# Report generation and predictions


@dataclass(frozen=True)
class ReportStyle:
    """How to write the report: detail level, length and decoding."""

    detail: Detail = "standard"  # control token given to the decoder
    max_new_tokens: int = 96  # hard cap on generated tokens
    max_sentences: int | None = None  # cut the decoded report after this many sentences
    whole_sentences: bool = True  # when max_new_tokens cuts a sentence, drop it (Prediction.truncated)
    decoding: Literal["greedy", "beam", "sample"] = "greedy"
    num_beams: int = 3  # beam only
    length_penalty: float = 1.0  # beam only; > 1 favours longer reports
    no_repeat_ngram_size: int = 0  # beam/sample; 0 = off
    temperature: float = 1.0  # sample only
    top_k: int = 0  # sample only; 0 = off
    seed: int = 0  # sample only, for reproducible draws


@dataclass
class Prediction:
    """Everything one model says about one study."""

    model_id: str  # e.g. "teacher", "student", "student_nokd"
    modality: Modality
    findings: dict[str, float]  # FINDINGS -> probability
    tumour: dict[str, float]  # TUMOUR_CLASSES -> probability (sums to 1)
    treatments: list[TreatmentSuggestion]  # sorted by probability, all TREATMENTS
    report: str
    tokens: list[str]  # generated words, in order
    token_probs: list[float]  # probability of each generated token
    latency_ms: dict[str, float]  # "encode", "heads", "decode", "total"
    ood_score: float  # higher = less familiar: the guard's probe where one fits the weights (model/guard/ood.py)
    ood_flag: bool  # True when ood_score is above the calibrated threshold
    tumour_subtype: dict[str, float] | None = None  # TUMOUR_SUBTYPES -> prob, when the model has the head
    ood_threshold: float = float("nan")  # the threshold ood_flag compares against
    ood_method: str = "mahalanobis"  # "guard_probe" (calibrated on positives and negatives: refuses) or
    # "mahalanobis" (the checkpoint's own, in-distribution quantile only: a warning)
    verdict: GuardVerdict | None = None  # the input guard's verdict for this model (model/guard)
    truncated: bool = False  # the token cap stopped the report (its unfinished sentence dropped)
    token_limit: int | None = None  # the token cap the report was decoded under
    #: where the report contradicts this model's own heads (issue 10): "denied:NAME" (head present, report
    #: denies it) or "asserted:NAME" (head absent, report states it); see model/evaluate/consistency.py
    report_conflicts: list[str] = field(default_factory=list)
    #: the raw decoder's contradictions, before the report was made to follow the heads
    #: (``model/follow_labels.py``); equal to ``report_conflicts`` when nothing was changed
    decoder_conflicts: list[str] = field(default_factory=list)
    #: what following the heads changed, in a plain sentence ("" = nothing)
    report_edits: str = ""
    #: the report's side and zone / lobe words were read from the model's lesion map (issue 11;
    #: ``model/ground_location.py``): rewritten to the map's reading, removed where it cannot tell
    location_grounded: bool = False
    #: the location phrases that grounding changed ("nodule: 'in the right upper zone' -> ...")
    location_edits: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["treatments"] = [t.__dict__ for t in self.treatments]
        d["verdict"] = self.verdict.to_dict() if self.verdict is not None else None
        return d


@dataclass
class Explanation:
    """A heat map for one target."""

    heatmap: np.ndarray  # (H, W) float32 in [0, 1], same size as Study.pixels
    target: str  # e.g. "finding:cardiomegaly", "tumour:malignant", "sentence:2"
    method: str  # e.g. "gradcam", "gradcam++"
    score: float  # the target's score (logit or log-prob) on this study
    flat: bool = False  # True when the map holds no localised positive evidence (heatmap is all zero)
    layer: str | None = None  # the feature map the CAM used, e.g. "layer3" (stride 16) or "layer4"
