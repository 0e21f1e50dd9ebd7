"""components/figures.py: pure plotly figure builders (no Streamlit calls)."""

from __future__ import annotations

from components.figures import make_loss_curves_figure
from model.distill.config import TERMS


def test_loss_curves_plot_the_loss_terms_only():
    """Lines are the loss's own TERMS + total, whatever else a log line carries (lr, metrics, counters)."""
    train = [
        {"split": "train", "step": s, "lr": 1e-3, "grad_norm": 2.0, "total": 3.0 - s / 10, "ce_report": 2.0,
         "kd_tokens": 1.0, "hint": 0.0, "tokens_per_s": 900.0, "new_metric_auprc": 0.7}
        for s in range(1, 6)
    ]  # fmt: skip
    names = [t.name for t in make_loss_curves_figure(train, "train").data]
    assert names == ["ce_report", "kd_tokens", "total"]  # hint is zero throughout: left out
    val = [{"split": "val", "epoch": 0, "val_total": 2.5, "val_ce_report": 2.0,
            "val_findings_macro_auroc": 0.8, "val_tumour_accuracy": 0.5}]  # fmt: skip
    assert [t.name for t in make_loss_curves_figure(val, "val").data] == ["val_ce_report", "val_total"]
    assert set(TERMS) >= {"ce_report", "kd_tokens", "hint"}
