"""Golden-value tests of the pure metric modules (hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.evaluate import calibration, classification, clinical, localization

# ----------------------------------------------------------------------------------------------
# classification


def test_auroc_hand_computed_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.2, 0.1 -> pairs: (0.8 beats 3) + (0.4 ties 1, beats 2) = 5.5 / 6
    y = [1, 1, 0, 0, 0]
    s = [0.8, 0.4, 0.4, 0.2, 0.1]
    assert classification.auroc(y, s) == pytest.approx(5.5 / 6)
    assert classification.auroc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)
    assert math.isnan(classification.auroc([1, 1], [0.2, 0.9]))


def test_auroc_ignores_unknown_targets():
    y = [1, np.nan, 0]
    s = [0.9, 0.0, 0.1]
    assert classification.auroc(y, s) == 1.0


def test_average_precision_hand_computed():
    # ranking: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-) -> AP = 0.5*1 + 0.5*(2/3)
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.1]
    assert classification.average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a tie group is one threshold: 0.9 (+), {0.5 (+), 0.5 (-)} -> 0.5*1 + 0.5*(2/3)
    assert classification.average_precision([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_best_f1_threshold_and_confusion():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.1]
    # t=0.9: F1 2/3; t=0.8: 2*1/(2+1+1)=0.5; t=0.7: 2*2/(4+1)=0.8; t=0.1: 2*2/(4+2)=2/3
    assert classification.best_f1_threshold(y, s) == pytest.approx(0.7)
    m = classification.binary_metrics(y, s, 0.7)
    assert m["confusion"] == [[1, 1], [0, 2]]
    assert m["f1"] == pytest.approx(0.8)
    assert m["accuracy"] == pytest.approx(0.75)
    assert classification.best_f1_threshold([0, 0], [0.2, 0.4]) == 0.5  # no positive: default


def test_roc_curve_endpoints():
    roc = classification.roc_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0
    assert roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(0.75)


def test_multiclass_confusion_and_accuracy():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    y = [0, 1, 2, 2, -1]  # last one unknown
    out = classification.multiclass_metrics(y, probs, ("none", "benign", "malignant"))
    assert out["summary"]["accuracy"] == pytest.approx(0.75)
    assert out["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert out["per_label"]["benign"]["precision"] == pytest.approx(0.5)
    assert out["per_label"]["malignant"]["recall"] == pytest.approx(0.5)


def test_multilabel_macro_skips_undefined():
    t = np.array([[1, 0], [0, 0], [1, np.nan]], dtype=float)
    p = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.1]])
    out = classification.multilabel_metrics(t, p, ("a", "b"))
    assert out["summary"]["macro_auroc"] == pytest.approx(1.0)  # "b" has no positive: AUROC undefined
    assert out["per_label"]["b"]["n"] == 2


# ----------------------------------------------------------------------------------------------
# calibration


def test_ece_hand_computed():
    # bins (0.1]: no; p=0.25 x2 in (0.2,0.3] with 1 positive -> |0.5-0.25|; p=0.95 x2 in (0.9,1] both right
    conf = [0.25, 0.25, 0.95, 0.95]
    corr = [1, 0, 1, 1]
    r = calibration.reliability(conf, corr, n_bins=10)
    assert r["ece"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    assert [b["count"] for b in r["bins"]] == [0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert calibration.reliability([0.0, 1.0], [0, 1], 10)["ece"] == 0.0  # edges land in first / last bin


def test_softmax_reliability_top_label():
    probs = np.array([[0.6, 0.4], [0.9, 0.1]])
    r = calibration.softmax_reliability([1, 0], probs, n_bins=10)
    # bin (0.5,0.6]: conf 0.6, acc 0; bin (0.8,0.9]: conf 0.9, acc 1
    assert r["ece"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.1)


# ----------------------------------------------------------------------------------------------
# localisation


def test_pointing_game_and_tolerance():
    h = np.zeros((20, 20))
    h[5, 5] = 1.0
    mask = np.zeros((20, 20), bool)
    mask[7:10, 7:10] = True
    assert not localization.pointing_hit(h, mask, tolerance_px=0)
    assert not localization.pointing_hit(h, mask, tolerance_px=1)
    assert localization.pointing_hit(h, mask, tolerance_px=2)
    h2 = np.zeros((20, 20))
    h2[8, 8] = 1.0
    assert localization.pointing_hit(h2, mask, tolerance_px=0)
    # a mask at half resolution is resized by nearest neighbour
    assert localization.pointing_hit(h2, mask[::2, ::2], tolerance_px=0)


def test_iou_threshold_rules():
    h = np.zeros((10, 10))
    h[:2, :5] = 1.0  # 10 pixels at max
    h[2, :5] = 0.4  # below 0.5 * max
    mask = np.zeros((10, 10), bool)
    mask[:2, :] = True  # 20 pixels
    assert localization.mask_iou(h, mask, "rel:0.5") == pytest.approx(10 / 20)
    assert localization.threshold_map(h, "top:0.15").sum() == 15
    assert localization.mask_iou(h, mask, "top:0.10") == pytest.approx(10 / 20)


def test_map_agreement():
    a = np.arange(16, dtype=float).reshape(4, 4)
    assert localization.map_agreement(a, a)["pearson"] == pytest.approx(1.0)
    assert localization.map_agreement(a, -a)["pearson"] == pytest.approx(-1.0)
    assert localization.map_agreement(a, 2 * a + 1)["iou"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# clinical efficacy


def _labels(pos=(), unc=(), neg=()):
    d = {n: None for n in clinical.CE_LABELS}
    d.update({n: "positive" for n in pos})
    d.update({n: "uncertain" for n in unc})
    d.update({n: "negative" for n in neg})
    return d


def test_clinical_efficacy_averaging_by_hand():
    # case 1: ref {cardiomegaly, pleural_effusion}, gen {cardiomegaly}           -> TP1 FN1
    # case 2: ref {nodule}, gen {nodule, edema}                                 -> TP1 FP1
    # case 3: ref {}, gen {}                                                    -> both empty
    # case 4: ref {cardiomegaly}, gen {pneumothorax}                            -> FP1 FN1
    ref = [
        _labels(["cardiomegaly", "pleural_effusion"]),
        _labels(["nodule"]),
        _labels(),
        _labels(["cardiomegaly"]),
    ]
    gen = [
        _labels(["cardiomegaly"], neg=["edema"]),
        _labels(["nodule", "edema"]),
        _labels(),
        _labels(["pneumothorax"]),
    ]
    out = clinical.ce_scores(gen, ref)
    # micro: TP 2, FP 2, FN 2 -> P = R = F1 = 0.5
    assert out["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # macro over labels that occur: cardiomegaly (TP1 FN1: P1 R.5 F2/3), effusion (FN1: 0,0,0),
    # pneumothorax (FP1: 0,0,0), nodule (TP1: 1,1,1), edema (FP1: 0,0,0)
    assert out["macro"]["precision"] == pytest.approx(2 / 5)
    assert out["macro"]["recall"] == pytest.approx(1.5 / 5)
    assert out["macro"]["f1"] == pytest.approx((2 / 3 + 1) / 5)
    # example-based: case F1s 2/3, 2/3, 1, 0 ; P 1, 0.5, 1, 0 ; R 0.5, 1, 1, 0
    assert out["example"]["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    assert out["example"]["precision"] == pytest.approx(2.5 / 4)
    assert out["example"]["recall"] == pytest.approx(2.5 / 4)
    assert out["protocol"]["uncertain"] == "positive"
    assert out["protocol"]["not_mentioned"] == "negative"


def test_clinical_uncertain_policies():
    ref = [_labels(["nodule"])]
    gen = [_labels(unc=["nodule"])]
    assert clinical.ce_scores(gen, ref, uncertain="positive")["micro"]["f1"] == 1.0
    assert clinical.ce_scores(gen, ref, uncertain="negative")["micro"]["f1"] == 0.0
    ignored = clinical.ce_scores(gen, ref, uncertain="ignore")
    assert ignored["per_label"]["nodule"]["support"] == 0
    with pytest.raises(ValueError):
        clinical.ce_scores(gen, ref, uncertain="maybe")


def test_clinical_efficacy_with_the_labeler():
    out = clinical.clinical_efficacy(
        ["The heart is enlarged. No pleural effusion."], ["Cardiomegaly. Small right pleural effusion."]
    )
    assert out["reference_labels"][0]["pleural_effusion"] == "positive"
    assert out["per_label"]["cardiomegaly"]["f1"] == 1.0
    assert out["per_label"]["pleural_effusion"]["recall"] == 0.0
