"""Golden values for every distillation loss, computed by hand in numpy on tiny tensors."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model.distill.config import DistillConfig
from model.distill.losses import (
    TERMS,
    TeacherTargets,
    attention_map,
    attention_transfer,
    binary_kd,
    distillation_loss,
    fitnets_hint,
    masked_bce,
    masked_ce,
    report_ce,
    soft_target_kl,
    topk_token_kl,
)

NAN = float("nan")


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Hard-label terms


def test_masked_bce_golden_ignores_nan_and_mask():
    logits = [[0.0, 2.0, -1.0], [1.0, 0.5, 3.0]]
    targets = [[1.0, NAN, 0.0], [0.0, 1.0, 1.0]]
    mask = [[True, True, True], [True, False, True]]
    # known entries: (0,0) y=1 z=0; (0,2) y=0 z=-1; (1,0) y=0 z=1; (1,2) y=1 z=3
    expected = np.mean(
        [
            -math.log(_sigmoid(0.0)),
            -math.log(1 - _sigmoid(-1.0)),
            -math.log(1 - _sigmoid(1.0)),
            -math.log(_sigmoid(3.0)),
        ]
    )
    got = masked_bce(t(logits), t(targets), t(mask, torch.bool))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_masked_ce_golden_and_all_unknown_is_zero():
    logits = t([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [2.0, 1.0, 1.0]])
    targets = torch.tensor([1, -100, 0])
    p = _softmax(logits.numpy())
    expected = np.mean([-math.log(p[0, 1]), -math.log(p[2, 0])])
    assert masked_ce(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    logits.requires_grad_(True)
    none = masked_ce(logits, torch.full((3,), -100))
    assert none.item() == 0.0 and torch.isfinite(none)
    none.backward()  # keeps a graph: an all-unknown batch still backpropagates (zeros)
    assert torch.all(logits.grad == 0)


def test_report_ce_shifts_and_masks():
    # vocab 3, sequence of 3 tokens; position t predicts token t+1
    lm = t([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]]])
    labels = torch.tensor([[-100, 1, -100]])  # only token 1 (predicted at position 0) is scored
    p = _softmax(lm[0, 0].numpy())
    assert report_ce(lm, labels).item() == pytest.approx(-math.log(p[1]), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Soft-label terms


def test_soft_target_kl_golden():
    zs = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    zt = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    T = 2.0
    ps, pt = _softmax(zs / T), _softmax(zt / T)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1)
    expected_all = T * T * kl.mean()
    expected_first = T * T * kl[0]
    assert soft_target_kl(t(zs), t(zt), torch.tensor([1, 1]), T).item() == pytest.approx(
        expected_all, rel=1e-5
    )
    assert soft_target_kl(t(zs), t(zt), torch.tensor([1, 0]), T).item() == pytest.approx(
        expected_first, rel=1e-5
    )
    assert soft_target_kl(t(zs), t(zs), torch.tensor([1, 1]), T).item() == pytest.approx(0.0, abs=1e-7)


def test_topk_token_kl_golden_and_equals_dense_when_k_is_vocab():
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(1, 2, 4))
    zt = rng.normal(size=(1, 2, 4))
    T = 1.5
    k = 2
    idx = np.argsort(-zt, axis=-1)[..., :k]
    top = np.take_along_axis(zt, idx, -1)
    pt = _softmax(top / T)  # renormalised over the top-k
    log_ps = np.log(_softmax(zs / T))
    log_ps_k = np.take_along_axis(log_ps, idx, -1)
    kl = (pt * (np.log(pt) - log_ps_k)).sum(-1)  # (1, 2)
    mask = torch.tensor([[True, False]])
    got = topk_token_kl(t(zs), torch.tensor(idx), t(top), mask, T)
    assert got.item() == pytest.approx(T * T * kl[0, 0], rel=1e-5)
    # k = V: identical to the dense Hinton KL
    full_idx = torch.arange(4).expand(1, 2, 4)
    dense = soft_target_kl(t(zs), t(zt), torch.ones(1, 2), T)
    topk = topk_token_kl(t(zs), full_idx, t(zt), torch.ones(1, 2), T)
    assert topk.item() == pytest.approx(dense.item(), rel=1e-5)


def test_binary_kd_golden_and_zero_at_teacher():
    zs = np.array([[0.0, 1.0], [-2.0, 0.5]])
    zt = np.array([[1.0, 1.0], [2.0, -0.5]])
    T = 2.0
    ps, pt = _sigmoid(zs / T), _sigmoid(zt / T)
    kl = pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))
    item_mask = torch.tensor([True, False])
    assert binary_kd(t(zs), t(zt), item_mask, T).item() == pytest.approx(T * T * kl[0].mean(), rel=1e-5)
    assert binary_kd(t(zs), t(zt), torch.ones(2, 2), T).item() == pytest.approx(T * T * kl.mean(), rel=1e-5)
    assert binary_kd(t(zt), t(zt), torch.ones(2), T).item() == pytest.approx(0.0, abs=1e-7)


def test_fitnets_hint_golden_with_projection_and_resize():
    s = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).reshape(2, 1, 2, 2)  # (B, C_s=1, 2, 2)
    teacher = torch.ones(2, 2, 1, 1)  # (B, C_t=2, 1, 1): pooled to 1x1

    def projector(x):  # fixed "1x1 conv": channel 0 = x, channel 1 = 2x
        return torch.cat([x, 2 * x], 1)

    # pooled student: item0 mean(0..3)=1.5, item1 mean(4..7)=5.5; projected: (1.5, 3), (5.5, 11)
    expected = np.mean([(1.5 - 1) ** 2, (3 - 1) ** 2, (5.5 - 1) ** 2, (11 - 1) ** 2])
    assert fitnets_hint(s, teacher, projector).item() == pytest.approx(expected, rel=1e-6)


def test_attention_transfer_golden():
    s = t([[[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    te = t([[[[0.0, 2.0], [0.0, 0.0]]]])  # (1, 1, 2, 2): channel counts differ, fine
    # Q_s = sum_c a^2 = [2, 0, 0, 1] -> /sqrt(5); Q_t = [0, 4, 0, 0] -> [0, 1, 0, 0]
    qs = np.array([2, 0, 0, 1]) / math.sqrt(5)
    qt = np.array([0, 1, 0, 0])
    np.testing.assert_allclose(attention_map(s)[0].numpy(), qs, rtol=1e-6)
    assert attention_transfer(s, te).item() == pytest.approx(((qs - qt) ** 2).mean(), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# The combined objective


def _fake_batch(B=3, L=5, V=7, all_unknown=False):
    g = torch.Generator().manual_seed(0)
    findings = torch.randint(0, 2, (B, 7), generator=g).float()
    tumour = torch.tensor([-100, 1, 2])[:B]
    subtype = torch.tensor([-100, -100, 0])[:B]
    labels = torch.randint(0, V, (B, L), generator=g)
    if all_unknown:
        findings[:] = NAN
        tumour[:] = -100
        subtype[:] = -100
        labels[:] = -100
    return {
        "findings": findings,
        "findings_mask": ~torch.isnan(findings),
        "tumour": tumour,
        "subtype": subtype,
        "treatments": torch.full((B, 7), NAN) if all_unknown else torch.zeros(B, 7),
        "treatments_mask": torch.zeros(B, 7, dtype=torch.bool)
        if all_unknown
        else torch.ones(B, 7, dtype=torch.bool),
        "labels": labels,
        "token_mask": torch.ones(B, L, dtype=torch.bool),
        "is_cxr": torch.tensor([True, False, False])[:B],
        "is_ct": torch.tensor([False, True, True])[:B],
    }


def _fake_out(B=3, L=5, V=7, C=4, seed=1, grad=False):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        x = torch.randn(*shape, generator=g)
        return x.requires_grad_(grad)

    return SimpleNamespace(
        findings_logits=r(B, 7),
        tumour_logits=r(B, 3),
        subtype_logits=r(B, 3),
        treatment_logits=r(B, 7),
        lm_logits=r(B, L, V),
        features=r(B, C, 4, 4),
    )


def test_distillation_loss_returns_every_term_and_weighted_total():
    cfg = DistillConfig()
    s, te = _fake_out(seed=1), _fake_out(seed=2, C=6)
    proj = torch.nn.Conv2d(4, 6, 1)
    out = distillation_loss(s, TeacherTargets.from_output(te), _fake_batch(), cfg, hint_projector=proj)
    required = {"ce_report", "bce_findings", "ce_tumour", "bce_treatment", "kd_tokens", "kd_findings"}
    required |= {"kd_tumour", "kd_treatment", "hint", "attention", "total"}
    assert required <= set(out)
    for k, v in out.items():
        assert torch.isfinite(v), k
        if k not in ("total", "lesion"):  # lesion: 0 without a lesion head (tests/test_lesion_head.py)
            assert v.item() > 0, k
    w = {k: getattr(cfg, f"w_{k}") for k in TERMS}
    assert out["total"].item() == pytest.approx(sum(w[k] * out[k].item() for k in TERMS), rel=1e-5)
    # the individual pieces agree with the pure functions
    b = _fake_batch()
    assert out["kd_findings"].item() == pytest.approx(
        binary_kd(s.findings_logits, te.findings_logits, b["is_cxr"], cfg.temperature).item()
    )


def test_no_teacher_and_without_kd_zero_the_kd_terms():
    s = _fake_out()
    a = distillation_loss(s, None, _fake_batch(), DistillConfig())
    b = distillation_loss(
        s, TeacherTargets.from_output(_fake_out(seed=3)), _fake_batch(), DistillConfig().without_kd()
    )
    for out in (a, b):
        for k in ("kd_tokens", "kd_findings", "kd_tumour", "kd_treatment", "hint", "attention"):
            assert out[k].item() == 0.0
    assert a["total"].item() == pytest.approx(b["total"].item())


def test_all_unknown_batch_is_finite_and_backpropagates():
    s = _fake_out(grad=True)
    out = distillation_loss(s, None, _fake_batch(all_unknown=True), DistillConfig())
    assert torch.isfinite(out["total"]) and out["total"].item() == 0.0
    out["total"].backward()
    assert torch.isfinite(s.findings_logits.grad).all()


def test_weights_come_from_terms_and_the_subtype_share_is_configured():
    cfg = DistillConfig(w_hint=0.25, kd_subtype_share=0.0)
    assert list(cfg.weights()) == list(TERMS) and cfg.weights()["hint"] == 0.25
    s, te = _fake_out(seed=1), TeacherTargets.from_output(_fake_out(seed=2))
    b = _fake_batch()
    base = distillation_loss(s, te, b, cfg)["kd_tumour"].item()
    more = distillation_loss(s, te, b, DistillConfig(kd_subtype_share=1.0))["kd_tumour"].item()
    sub = soft_target_kl(s.subtype_logits, te.subtype_logits, b["is_ct"].bool(), cfg.temperature).item()
    assert more == pytest.approx(base + sub, rel=1e-5)


def test_the_hint_projector_is_trained_through_the_loss():
    """FitNets: the learned 1x1 projection gets gradients from the hint term (not a precomputed map)."""
    s, te = _fake_out(seed=1, grad=True), TeacherTargets.from_output(_fake_out(seed=2, C=6))
    proj = torch.nn.Conv2d(4, 6, 1)
    cfg = dataclasses.replace(DistillConfig().without_kd(), w_hint=1.0)  # the hint term alone
    distillation_loss(s, te, _fake_batch(), cfg, hint_projector=proj)["total"].backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert s.features.grad is not None and s.features.grad.abs().sum() > 0


def test_teacher_targets_rows_and_concat_keep_fields():
    t = TeacherTargets.from_output(_fake_out(B=4, seed=2))
    both = TeacherTargets.concat([t, t])
    assert both.findings_logits.shape[0] == 8 and both.lm_logits.shape[:2] == (8, 5)
    part = both.rows(torch.tensor([1, 5]), length=3)
    torch.testing.assert_close(part.lm_logits, t.lm_logits[[1, 1], :3])
    assert TeacherTargets.concat([t, TeacherTargets(t.findings_logits, t.tumour_logits, None,
                                                    t.treatment_logits)]).subtype_logits is None  # fmt: skip
