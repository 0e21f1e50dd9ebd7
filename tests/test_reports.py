"""Ground-truth report writer: determinism, coverage of findings, measurements, negatives, variety."""

from __future__ import annotations

import re

import numpy as np
import pytest

from model.data.labeler import label_report
from model.data.reports import compose_report_from_labels, write_report, write_reports
from model.types import DETAIL_LEVELS, FINDINGS, CaseTruth, Finding

# Words that must name each present finding (independent of the labeler).
NAMED = {
    "cardiomegaly": r"cardiomegaly|cardiac|heart|cardiomediastinal",
    "pleural_effusion": r"effusion",
    "pneumothorax": r"pneumothorax",
    "nodule": r"nodule|mass",
    "consolidation": r"consolidation",
    "edema": r"oedema",
    "atelectasis": r"atelectasis|collapse",
}

FULL = CaseTruth(
    "full",
    "CXR",
    (
        Finding("cardiomegaly", severity="moderate", ratio=0.58),
        Finding("pleural_effusion", side="left", zone="basal", size_mm=24.0, severity="mild"),
        Finding("pneumothorax", side="right", zone="apical", size_mm=12.0, severity="mild"),
        Finding("nodule", side="right", zone="upper", size_mm=14.0, character="spiculated"),
        Finding("consolidation", side="left", zone="lower", size_mm=45.0, severity="moderate"),
        Finding("edema", side="bilateral", zone="hilar", severity="mild"),
        Finding("atelectasis", side="right", zone="lower", severity="mild", character="plate-like"),
    ),
)


def _corpus(n: int = 150, seed: int = 0) -> list[CaseTruth]:
    """Random truths: the phantom engine's sampler, plus every single-finding case with attributes."""
    from model.data.phantom import sample_truth

    rng = np.random.default_rng(seed)
    truths = [sample_truth(rng, "CXR" if i % 3 else "CT", f"c{i}") for i in range(n)]
    truths += [CaseTruth(f"one_{f.name}", "CXR", (f,)) for f in FULL.findings]
    return truths + [FULL, CaseTruth("normal", "CXR"), CaseTruth("ct_none", "CT", tumour="none")]


CORPUS = _corpus()


def test_deterministic_for_a_seed():
    for truth in CORPUS[:30]:
        a = write_reports(truth, np.random.default_rng(7))
        b = write_reports(truth, np.random.default_rng(7))
        assert a == b
        assert set(a) == set(DETAIL_LEVELS)


def test_every_present_finding_is_named_at_every_level():
    rng = np.random.default_rng(1)
    for truth in CORPUS:
        for detail, text in write_reports(truth, rng).items():
            low = text.lower()
            for f in truth.findings:
                if f.name in NAMED:
                    assert re.search(NAMED[f.name], low), (f.name, detail, text)
            if truth.tumour in ("benign", "malignant"):
                assert re.search(r"nodule|mass", low), text
                word = r"benign" if truth.tumour == "benign" else r"malignan"
                assert re.search(word, low), (detail, text)


def test_sentences_split_on_periods():
    rng = np.random.default_rng(2)
    for truth in CORPUS:
        for detail, text in write_reports(truth, rng).items():
            assert text.endswith(".") and "  " not in text and ".." not in text
            sentences = text[:-1].split(". ")
            for s in sentences:
                assert s and s[0].isupper(), (s, text)
                assert "." not in re.sub(r"\d\.\d", "", s), (s, text)  # only decimals inside
            if detail == "brief":
                assert 1 <= len(sentences) <= 2, text


def test_detailed_has_measurements_and_pertinent_negatives():
    for seed in range(5):
        text = write_report(FULL, "detailed", np.random.default_rng(seed))
        assert "0.58" in text  # cardiothoracic ratio
        for mm in ("24 mm", "12 mm", "14 mm", "45 mm"):
            assert mm in text, (mm, text)
        for side in ("left", "right"):
            assert side in text
        assert re.search(r"recommend|advised", text, re.I)
    rng = np.random.default_rng(3)
    for truth in CORPUS:
        if truth.modality != "CXR":
            continue
        text = write_report(truth, "detailed", rng)
        labels = label_report(text)
        present = {f.name for f in truth.findings}
        for name in FINDINGS:
            assert labels[name] == ("positive" if name in present else "negative"), (name, text)


def test_normal_studies_get_normal_reports():
    rng = np.random.default_rng(4)
    for truth in (CaseTruth("n", "CXR"), CaseTruth("n", "CT", tumour="none")):
        reports = write_reports(truth, rng)
        assert re.search(r"normal|no acute|no evidence|no pulmonary nodule", reports["brief"], re.I)
        for text in reports.values():
            labels = label_report(text)
            assert labels["normal"] == "positive", text
            assert all(labels[n] in ("negative", None) for n in FINDINGS), text
        n_sentences = {d: t.count(". ") + 1 for d, t in reports.items()}
        assert n_sentences["detailed"] > n_sentences["standard"] > n_sentences["brief"] == 1


def test_ct_tumour_recommendations():
    malignant = CaseTruth(
        "m", "CT", (Finding("tumour", "left", "upper", 34.0, character="spiculated"),), tumour="malignant"
    )
    benign = CaseTruth(
        "b", "CT", (Finding("tumour", "right", "lower", 9.0, character="calcified"),), tumour="benign"
    )
    rng = np.random.default_rng(5)
    m = write_report(malignant, "detailed", rng)
    assert "34 mm" in m and "left upper lobe" in m and "spiculated" in m
    assert re.search(r"tissue sampling", m) and re.search(r"multidisciplinary", m)
    b = write_report(benign, "detailed", rng)
    assert "9 mm" in b and "calcified" in b and "guidelines" in b
    assert label_report(b)["tumour_malignant"] in ("negative", None)


def test_many_phrasings_over_seeds():
    texts = {
        lvl: {write_report(FULL, lvl, np.random.default_rng(s)) for s in range(40)} for lvl in DETAIL_LEVELS
    }
    assert len(texts["brief"]) >= 10 and len(texts["standard"]) >= 30 and len(texts["detailed"]) >= 30
    normal = {write_report(CaseTruth("n", "CXR"), "standard", np.random.default_rng(s)) for s in range(40)}
    assert len(normal) >= 30
    # the order of findings varies: the first sentence is not always about the same finding
    firsts = {t.split(". ")[0].split()[-1] for t in texts["standard"]}
    assert len(firsts) >= 4


def test_vocabulary_is_moderate():
    rng = np.random.default_rng(6)
    words = set()
    for truth in CORPUS:
        for text in write_reports(truth, rng).values():
            words.update(re.findall(r"[a-z]+", text.lower()))
    assert 100 <= len(words) <= 500, len(words)


def test_compose_report_from_labels_states_only_known_negatives():
    rng = np.random.default_rng(8)
    text = compose_report_from_labels(
        ["edema", "consolidation"], "CXR", "detailed", rng, negative=["pneumothorax"]
    )
    labels = label_report(text)
    assert labels["edema"] == labels["consolidation"] == "positive"
    assert labels["pneumothorax"] == "negative"
    assert labels["pleural_effusion"] is None and labels["cardiomegaly"] is None  # unknown: not stated
    for tumour in ("benign", "malignant"):
        for detail in DETAIL_LEVELS:
            t = compose_report_from_labels([f"tumour_{tumour}"], "CT", detail, rng)
            assert label_report(t)[f"tumour_{tumour}"] == "positive", t
    none = compose_report_from_labels(["tumour_none"], "CT", "brief", rng)
    assert label_report(none)["normal"] == "positive"


def test_bad_detail_level():
    with pytest.raises(ValueError, match="detail"):
        write_report(FULL, "verbose", np.random.default_rng(0))
