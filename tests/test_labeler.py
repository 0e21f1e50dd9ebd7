"""Rule-based report labeler: negation, uncertainty, pseudo-negation, synonyms, CheXpert mapping."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from model.data.labeler import (
    CHEXPERT_OBSERVATIONS,
    REPORT_LABELS,
    label_report,
    label_report_chexpert,
    split_sentences,
)

P, N, U = "positive", "negative", "uncertain"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_labeler.py"

# (sentence, expected labels for the findings named; every other finding must be None)
CASES = [
    ("No pleural effusion or pneumothorax.", {"pleural_effusion": N, "pneumothorax": N}),
    ("Cannot exclude small left effusion.", {"pleural_effusion": U}),
    ("Heart size is normal.", {"cardiomegaly": N}),
    ("Lungs are clear.", {"consolidation": N}),
    ("Possible right lower lobe consolidation.", {"consolidation": U}),
    ("Resolved pneumothorax.", {"pneumothorax": N}),
    ("The lungs are free of focal consolidation.", {"consolidation": N}),
    ("Bibasilar opacity may represent atelectasis.", {"consolidation": P, "atelectasis": U}),
    ("No change in the large effusion.", {"pleural_effusion": P}),
    ("No interval change in the right pleural effusion.", {"pleural_effusion": P}),
    ("The heart is not enlarged.", {"cardiomegaly": N}),
    ("The cardiomediastinal silhouette is enlarged, cardiothoracic ratio 0.58.", {"cardiomegaly": P}),
    ("Small left pleural effusion blunting the costophrenic angle.", {"pleural_effusion": P}),
    ("No pneumothorax.", {"pneumothorax": N}),
    ("Left basilar opacity, likely atelectasis.", {"consolidation": P, "atelectasis": U}),
    ("No focal consolidation, pleural effusion, or pneumothorax is seen.",
     {"consolidation": N, "pleural_effusion": N, "pneumothorax": N}),
    ("No effusion, the heart is enlarged.", {"pleural_effusion": N, "cardiomegaly": P}),
    ("Atelectasis rather than consolidation.", {"atelectasis": P, "consolidation": N}),
    ("Pneumothorax has resolved.", {"pneumothorax": N}),
    ("Heart size is top normal.", {"cardiomegaly": U}),
    ("Heart size is stable.", {}),
    ("Mild pulmonary vascular congestion.", {"edema": P}),
    ("Pulmonary vascularity is normal.", {"edema": N}),
    ("Interval resolution of the right pleural effusion.", {"pleural_effusion": N}),
    ("Stable cardiomegaly.", {"cardiomegaly": P}),
    ("No evidence of pneumonia.", {"consolidation": N}),
    ("Findings suggestive of pulmonary edema.", {"edema": U}),
    ("Interstitial oedema.", {"edema": P}),
    ("Left lower lobe collapse.", {"atelectasis": P}),
    ("Possible small left pleural effusion versus pleural thickening.", {"pleural_effusion": U}),
    ("The costophrenic angles are sharp.", {"pleural_effusion": N}),
    ("Pneumonia cannot be excluded.", {"consolidation": U}),
    ("There is no evidence of pneumothorax, but there is a small right effusion.",
     {"pneumothorax": N, "pleural_effusion": P}),
    ("Heart size and mediastinal contours are within normal limits.", {"cardiomegaly": N}),
    ("Normal heart size, small left effusion.", {"cardiomegaly": N, "pleural_effusion": P}),
    ("No pneumothorax and mild cardiomegaly is present.", {"pneumothorax": N, "cardiomegaly": P}),
    ("Negative for pneumothorax.", {"pneumothorax": N}),
    ("Absence of pleural effusion.", {"pleural_effusion": N}),
    ("Without focal airspace disease.", {"consolidation": N}),
    ("Patchy airspace disease in the right lower lobe.", {"consolidation": P}),
    ("No suspicious pulmonary nodules.", {"nodule": N}),
    ("A 14 mm nodule in the right upper zone.", {"nodule": P}),
    ("Pericardial effusion.", {}),
    ("Nodular opacity in the left upper lobe.", {"nodule": P}),
    ("No pleural effusion is identified.", {"pleural_effusion": N}),
    ("Questionable small right apical pneumothorax.", {"pneumothorax": U}),
    ("Atelectasis is likely.", {"atelectasis": U}),
    ("Subsegmental atelectasis at the left base.", {"atelectasis": P}),
    ("Right upper lobe mass, suspicious for malignancy.", {"nodule": P, "tumour_malignant": P}),
    ("Possible malignancy.", {"tumour_malignant": U}),
    ("Calcified granuloma in the left upper lobe.", {"nodule": P, "tumour_benign": P}),
    ("No features of malignancy.", {"tumour_malignant": N}),
]  # fmt: skip


@pytest.mark.parametrize("sentence,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_negation_and_uncertainty(sentence, expected):
    got = label_report(sentence)
    assert set(got) == set(REPORT_LABELS)
    for name in REPORT_LABELS:
        if name == "normal":
            continue
        assert got[name] == expected.get(name), (name, got)
    abnormal = any(v in (P, U) for v in expected.values())
    assert got["normal"] == (N if abnormal else P)


def test_sentence_split_keeps_decimals():
    assert split_sentences("Cardiothoracic ratio 0.58. No effusion.\nIMPRESSION: Normal.") == [
        "Cardiothoracic ratio 0.58.",
        "No effusion.",
        "IMPRESSION: Normal.",
    ]


def test_scope_ends_at_sentence_and_contrast():
    got = label_report(
        "No pneumothorax. Large right pleural effusion. No consolidation however small atelectasis."
    )
    assert got["pneumothorax"] == N and got["pleural_effusion"] == P
    assert got["consolidation"] == N and got["atelectasis"] == P


def test_positive_wins_over_negative_mentions():
    got = label_report("Lungs are clear. Right lower zone consolidation.")
    assert got["consolidation"] == P


def test_empty_text():
    assert all(v is None for v in label_report("").values())
    assert all(v is None for v in label_report_chexpert("   ").values())


# Realistic human-written reports (IU X-Ray / MIMIC-CXR style).
REAL = [
    (
        "The cardiomediastinal silhouette and pulmonary vasculature are within normal limits. There is no "
        "pneumothorax or pleural effusion. There are no focal areas of consolidation. Minimal degenerative "
        "changes of the thoracic spine. IMPRESSION: No acute cardiopulmonary abnormality.",
        {"No Finding": P, "Cardiomegaly": N, "Pneumothorax": N, "Pleural Effusion": N, "Consolidation": N},
    ),
    (
        "Heart size is mildly enlarged. There is mild pulmonary vascular congestion. Small bilateral pleural "
        "effusions with adjacent bibasilar atelectasis. No pneumothorax. Endotracheal tube terminates 4 cm "
        "above the carina.",
        {"Cardiomegaly": P, "Edema": P, "Pleural Effusion": P, "Atelectasis": P, "Pneumothorax": N,
         "Support Devices": P, "No Finding": None},
    ),
    (
        "Left lower lobe opacity which may represent atelectasis, although pneumonia cannot be excluded. "
        "No acute displaced rib fracture.",
        {"Lung Opacity": P, "Atelectasis": U, "Pneumonia": U, "Fracture": N},
    ),
    (
        "Interval placement of a right PICC line with tip in the SVC. Stable calcified granuloma in the right "
        "upper lobe. Apical pleural thickening. Lungs otherwise clear.",
        {"Support Devices": P, "Lung Lesion": P, "Pleural Other": P, "Consolidation": N},
    ),
    (
        "Mediastinal widening. Heart size upper limits of normal. Perihilar haziness suggests mild edema.",
        {"Enlarged Cardiomediastinum": P, "Cardiomegaly": U, "Lung Opacity": P, "Edema": U},
    ),
]  # fmt: skip


@pytest.mark.parametrize("text,expected", REAL, ids=[f"real{i}" for i in range(len(REAL))])
def test_chexpert_on_real_style_reports(text, expected):
    got = label_report_chexpert(text)
    assert tuple(got) == CHEXPERT_OBSERVATIONS and len(CHEXPERT_OBSERVATIONS) == 14
    for name, want in expected.items():
        assert got[name] == want, (name, got)


def test_agreement_with_generated_reports():
    """A small version of benchmarks/bench_labeler.py (the full run gives the closing-note figure)."""
    spec = importlib.util.spec_from_file_location("bench_labeler", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(n=60, seed=123)
    assert result["agreement"] >= 0.99, result["errors"][:3]
