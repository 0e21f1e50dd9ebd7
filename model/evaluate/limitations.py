"""A model card's ``known_limitations``: measured real-data figures and what they mean for a user.

    items = known_limitations("student", evaluation=json.load(open("assets/eval/phantom_test.json")),
                              real=json.load(open("benchmarks/results/real_quick.json")))

Each item is ``{"title", "figure", "meaning", "source"}``: ``figure`` is the measured number in
words (with n and the reference point: chance, baseline, before/after), ``meaning`` what a user
should do with it, ``source`` the JSON and key it came from. Figures come only from the given
results (``meddistill evaluate`` JSON, ``benchmarks/bench_real.py`` JSON); an item whose figure
is missing is left out rather than guessed. ``write_card_limitations`` replaces the
``known_limitations`` key of a checkpoint's ``model_card.json`` and touches nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

#: the bench_real results the shipped cards were written from (README, "Honest figures on real data")
REAL_RESULTS = "benchmarks/results/real_quick.json"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _get(d: Mapping | None, *keys):
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _swap_item(model: str, evaluation: Mapping | None, real: Mapping | None) -> dict | None:
    """Intensity swap on real CT: bench_real (all images, larger n) first, else the evaluation JSON."""
    for block, source in (
        (_get(real, "intensity_swap", "chest_ct", "all"), f"{REAL_RESULTS} intensity_swap.chest_ct.all"),
        (_get(real, "intensity_swap", "chest_ct", "held_out"), f"{REAL_RESULTS} intensity_swap.chest_ct.held_out"),
        (_get(evaluation, "real", "chest_ct_test", "counterfactual"), "evaluation real.chest_ct_test.counterfactual"),
    ):  # fmt: skip
        m = _get(block, "models", model)
        if not m:
            continue
        a, z = m["normal_to_abnormal"], m["abnormal_to_normal"]
        if a.get("n_not_other_before") == 0 and a.get("n"):  # every normal slice already called tumour
            return {
                "title": "Real CT: every slice is called tumour",
                "figure": (
                    f"Before any change, {_pct(a.get('positive_before'))} of {a['n']} normal real CT slices are "
                    f"called tumour; swapping intensity histograms changes {_pct(a.get('flip_rate'))} / "
                    f"{_pct(z.get('flip_rate'))} of the decisions (normal / cancer slices)."
                ),
                "meaning": (
                    "Its tumour output on real CT does not separate normal from cancer slices at all: a 'tumour' "
                    "answer on a real scan says nothing about that scan."
                ),
                "source": source,
            }
        if a.get("to_other_class") is None and z.get("to_other_class") is None:
            continue
        return {
            "title": "Real CT: the tumour head follows image brightness",
            "figure": (
                f"Given a cancer slice's intensity histogram (same anatomy), {_pct(a.get('to_other_class'))} of "
                f"the normal real CT slices it called normal are called tumour (n={a.get('n_not_other_before')}); "
                f"given a normal slice's histogram, {_pct(z.get('to_other_class'))} of the cancer slices it called "
                f"tumour are called normal (n={z.get('n_not_other_before')})."
            ),
            "meaning": (
                "On the real CT set, normal slices are brighter than cancer slices, and this model learned the "
                "brightness more than the lesion. Its high real-CT accuracy does not show that it recognises "
                "tumours: a slice from another scanner or with other window settings can be called cancer, or "
                "normal, for its brightness alone. Do not read its tumour probability on real CT as evidence."
            ),
            "source": source,
        }
    return None


def _cxr_item(model: str, evaluation: Mapping | None, real: Mapping | None) -> dict | None:
    auroc = _get(evaluation, "real", "nih1000_test", "models", model, "metrics", "findings", "macro_auroc")
    normal = _get(real, "real_reports", "nih1000", model, "abnormal_reported_normal")
    n_abn = _get(real, "real_reports", "nih1000", model, "n_abnormal")
    if auroc is None and normal is None:
        return None
    parts = []
    if auroc is not None:
        parts.append(
            f"findings macro AUROC {auroc:.2f} on held-out real chest X-rays (NIH thumbnails; 0.50 = chance)"
        )
    if normal is not None:
        parts.append(f"{_pct(normal)} of the real films with a finding are reported as normal (n={n_abn})")
    return {
        "title": "Real chest X-rays: close to chance",
        "figure": "; ".join(parts) + ".",
        "meaning": (
            "The finding head and the reports were learned mostly from phantoms. On real radiographs the model "
            "cannot tell abnormal from normal films, and its report will usually say 'normal' whatever the film "
            "shows. Use it on real X-rays only to see what distillation preserves, never to screen."
        ),
        "source": f"evaluation real.nih1000_test; {REAL_RESULTS} real_reports.nih1000",
    }


def _location_item(model: str, evaluation: Mapping | None, real: Mapping | None) -> dict | None:
    block, source = _get(real, "location", model), f"{REAL_RESULTS} location"
    if not block:
        block, source = _get(evaluation, "models", model, "location"), "evaluation models.*.location"
    t, f = _get(block, "tumour"), _get(block, "findings")
    if not t or t.get("side_agreement") is None:
        return None
    figure = (
        f"On phantoms with known locations, the tumour side is stated right {_pct(t['side_agreement'])} of the "
        f"time (always naming the commonest side: {_pct(t.get('side_majority_baseline'))}) and the lobe "
        f"{_pct(t.get('zone_agreement'))} (baseline {_pct(t.get('zone_majority_baseline'))}); "
        f"{_pct(t.get('invented_rate'))} of the located tumour statements are not supported by the truth"
    )
    if f and f.get("n_statements"):
        figure += (
            f". Chest X-ray findings: side right {_pct(f.get('side_agreement'))} of "
            f"{f.get('side_stated')} stated, {_pct(f.get('invented_rate'))} of located statements invented"
        )
    elif f and f.get("n_truth"):
        figure += f". Chest X-ray reports state the side of none of {f['n_truth']} located findings"
    top = _get(real, "real_reports", "chest_ct", model, "top_location_share")
    if top is not None:
        figure += f"; on real CT, {_pct(top)} of the located statements name the same place"
    return {
        "title": "Lesion location in reports is not reliable",
        "figure": figure + ".",
        "meaning": (
            "The report's 'right lower lobe' (or any side / lobe) is mostly a habit of the decoder, not a reading "
            "of the image. Check the Grad-CAM map and the image itself before trusting where a report puts a lesion."
        ),
        "source": source,
    }


#: the report models whose cards carry the list
SHIPPED_MODELS: tuple[str, ...] = ("teacher", "student", "student_nokd")

LIMITATION_BUILDERS = (_swap_item, _cxr_item, _location_item)


def known_limitations(
    model: str, evaluation: Mapping | None = None, real: Mapping | None = None
) -> list[dict]:
    """The list for one model from an evaluation JSON and / or a bench_real JSON (missing figures: no item)."""
    return [item for build in LIMITATION_BUILDERS if (item := build(model, evaluation, real))]


def write_card_limitations(card_path: str | Path, items: list[dict]) -> None:
    """Set ``known_limitations`` in a ``model_card.json``; every other key stays as it was."""
    path = Path(card_path)
    text = path.read_text()
    card = json.loads(text)
    card["known_limitations"] = items
    path.write_text(
        json.dumps(card, indent=2) + ("\n" if text.endswith("\n") else "")
    )  # the file's own layout


def main(argv: list[str] | None = None) -> int:
    """``python -m model.evaluate.limitations``: rewrite the shipped cards' ``known_limitations``."""
    import argparse

    repo = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument(
        "--eval", default=str(repo / "assets" / "eval" / "phantom_test.json"), help="evaluation JSON"
    )
    p.add_argument("--real", default=str(repo / REAL_RESULTS), help="bench_real JSON")
    p.add_argument(
        "--cards", default=str(repo / "assets" / "checkpoints"), help="folder of checkpoint folders"
    )
    args = p.parse_args(argv)
    evaluation = json.loads(Path(args.eval).read_text()) if Path(args.eval).is_file() else None
    real = json.loads(Path(args.real).read_text()) if Path(args.real).is_file() else None
    for card in sorted(Path(args.cards).glob("*/model_card.json")):
        if card.parent.name not in SHIPPED_MODELS:  # e.g. the input guard: not a report model
            continue
        items = known_limitations(card.parent.name, evaluation=evaluation, real=real)
        write_card_limitations(card, items)
        print(f"{card}: {len(items)} known limitations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
