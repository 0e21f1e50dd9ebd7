"""Report locations read from the lesion map (issue 11, Deliver 3): ``model/ground_location.py``."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model.ground_location import MapLocation, ground_tokens, read_location, rewrite_clause
from model.networks.tokenizer import detokenize
from model.types import LESION_CHANNELS, Study

torch.set_num_threads(1)


def _blob(cells: list[tuple[int, int]], size: int = 5, high: float = 0.9) -> np.ndarray:
    m = np.full((size, size), 0.01)
    for r, c in cells:
        m[r, c] = high
    return m


# -- reading a map ----------------------------------------------------------------------------------


def test_side_follows_the_radiological_convention():
    # patient's right is the image's left
    assert read_location(_blob([(2, 0), (2, 1)]), "CXR", "nodule").side == "right"
    assert read_location(_blob([(2, 3), (2, 4)]), "CXR", "nodule").side == "left"


def test_both_sides_is_bilateral_only_for_a_finding_that_can_be():
    both = _blob([(3, 0), (3, 4)])
    assert read_location(both, "CXR", "pleural_effusion").side == "bilateral"
    assert read_location(both, "CXR", "nodule").side is None  # a nodule is somewhere: cannot tell
    lopsided = _blob([(3, 0)], high=0.9) + _blob([(3, 4)], high=0.2) - 0.01
    assert read_location(lopsided, "CXR", "pleural_effusion").side == "right"


def test_a_map_on_the_midline_cannot_tell_the_side():
    assert read_location(_blob([(2, 2)]), "CXR", "nodule").side is None


def test_zone_from_the_vertical_centre_and_middle_is_not_guessed():
    assert read_location(_blob([(1, 0)]), "CXR", "nodule").zone == "upper"
    assert read_location(_blob([(3, 0)]), "CXR", "nodule").zone == "lower"
    # spread over rows 1 and 2 of 5 (centre 0.4 of the height): between the cuts, so no zone is named
    assert read_location(_blob([(1, 0), (2, 0)]), "CXR", "nodule").zone is None


def test_ct_lobe_is_never_read():
    where = read_location(_blob([(1, 4)]), "CT", "tumour")
    assert where.side == "left" and where.zone is None


def test_a_flat_map_tells_nothing():
    where = read_location(np.full((5, 5), 0.05), "CXR", "nodule")
    assert (where.side, where.zone) == (None, None)
    broken = read_location(np.full((5, 5), np.nan), "CXR", "nodule")
    assert (broken.side, broken.zone) == (None, None)


def _pool(mask: np.ndarray, grid: int = 5) -> np.ndarray:
    """A phantom mask as the lesion head would ideally see it: the share of each grid cell covered."""
    h = mask.shape[0] // grid * grid
    m = mask[:h, :h].astype(float).reshape(grid, h // grid, grid, h // grid).mean((1, 3))
    return np.clip(m * 4, 0.01, 0.99)


def test_rendered_phantom_masks_read_back_their_side():
    from model.data.phantom import make_case
    from model.evaluate.location import LOCATED_CXR

    checked = right = 0
    for seed in range(40):
        case = make_case(5_000 + seed, "CXR", size=160)
        for f in case.truth.findings:
            if f.name in LOCATED_CXR and f.side in ("left", "right") and f.name in case.masks:
                where = read_location(_pool(case.masks[f.name]), "CXR", f.name)
                if where.side is not None:
                    checked += 1
                    right += where.side == f.side
    assert checked >= 10
    assert right == checked  # a mask on one side is never read on the other


def test_rendered_phantom_masks_read_back_their_zone_when_they_state_one():
    from model.data.phantom import make_case
    from model.evaluate.location import COARSE_ZONE

    stated = right = 0
    for seed in range(40):
        case = make_case(6_000 + seed, "CXR", size=160)
        for f in case.truth.findings:
            if f.name in ("pleural_effusion", "pneumothorax") and f.name in case.masks:
                where = read_location(_pool(case.masks[f.name]), "CXR", f.name)
                if where.zone is not None:
                    stated += 1
                    right += where.zone == COARSE_ZONE[f.zone]
    assert stated >= 5 and right / stated >= 0.9  # effusions at the base, pneumothoraces at the apex


# -- rewriting the words ----------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.replace(".", " .").replace(",", " ,").split()


def _ground(text: str, modality: str, maps: dict) -> str:
    words = _words(text)
    return detokenize(list(ground_tokens(words, [0.5] * len(words), modality, maps).tokens))


LEFT_LOWER = _blob([(3, 3), (3, 4)])
RIGHT_UPPER = _blob([(1, 0), (1, 1)])
LEFT_MIDDLE = _blob([(1, 4), (2, 4)])
MIDLINE = _blob([(2, 2)])


@pytest.mark.parametrize(
    ("text", "maps", "want"),
    [
        ("There is a moderate left pleural effusion.", {"pleural_effusion": _blob([(3, 0)])},
         "There is a moderate right pleural effusion."),
        ("A 14 mm nodule in the right upper zone.", {"nodule": LEFT_LOWER}, "A 14 mm nodule in the left lower zone."),
        ("A 14 mm nodule in the right upper zone.", {"nodule": LEFT_MIDDLE}, "A 14 mm nodule in the left lung."),
        ("A 14 mm nodule in the right upper zone.", {"nodule": np.full((5, 5), 0.02)}, "A 14 mm nodule."),
        ("Right lower zone consolidation.", {"consolidation": RIGHT_UPPER}, "Right upper zone consolidation."),
        ("Right lower zone consolidation.", {"consolidation": np.full((5, 5), 0.02)}, "Consolidation."),
        ("Small effusion at the right base.", {"pleural_effusion": _blob([(3, 0), (3, 4)])},
         "Small effusion at both bases."),
        ("Small right pneumothorax, apical rim of 12 mm.", {"pneumothorax": _blob([(1, 4)])},
         "Small left pneumothorax, apical rim of 12 mm."),
        ("No left pleural effusion.", {"pleural_effusion": _blob([(3, 0)])}, "No left pleural effusion."),
        ("Consolidation in the left lower zone and a small left pleural effusion.",
         {"consolidation": RIGHT_UPPER, "pleural_effusion": LEFT_LOWER},
         "Consolidation in the right upper zone and a small left pleural effusion."),
        ("The heart is enlarged.", {"cardiomegaly": RIGHT_UPPER}, "The heart is enlarged."),
    ],
)  # fmt: skip
def test_cxr_rewrite(text, maps, want):
    assert _ground(text, "CXR", maps) == want


@pytest.mark.parametrize(
    ("text", "tumour", "want"),
    [
        ("A spiculated mass in the right lower lobe, with irregular margins.", _blob([(2, 4)]),
         "A spiculated mass in the left lung, with irregular margins."),
        ("Mass in the right lower lobe, highly suspicious for primary lung malignancy.", MIDLINE,
         "Mass, highly suspicious for primary lung malignancy."),
        ("A smooth nodule in the lingula.", _blob([(2, 0)]), "A smooth nodule in the right lung."),
        ("No pleural effusion or pneumothorax.", _blob([(2, 0)]), "No pleural effusion or pneumothorax."),
    ],
)  # fmt: skip
def test_ct_rewrite_keeps_the_side_and_drops_the_lobe(text, tumour, want):
    assert _ground(text, "CT", {"tumour": tumour}) == want


def test_rewritten_words_keep_their_own_probabilities_and_never_raise_them():
    words = _words("A 14 mm nodule in the right upper zone.")
    probs = [0.9, 0.8, 0.8, 0.7, 0.6, 0.95, 0.3, 0.4, 0.5, 0.99]
    r = ground_tokens(words, probs, "CXR", {"nodule": LEFT_LOWER})
    assert list(r.tokens[:4]) == words[:4] and list(r.token_probs[:4]) == probs[:4]  # untouched words
    assert len(r.tokens) == len(r.token_probs)
    assert all(p == 0.3 for p in r.token_probs[4:-1])  # the phrase: its lowest word's probability
    assert r.token_probs[-1] == 0.99 and r.changed


def test_rewrite_clause_names_nothing_returns_none():
    assert rewrite_clause(_words("The heart is enlarged"), "CXR", MapLocation("left", "upper", 0.9)) is None


# -- served by the Predictor ------------------------------------------------------------------------


def _predictor(head_pool: str):
    from model.inference import Predictor
    from model.networks import TINY_PRESETS, build_model, build_tokenizer

    tok = build_tokenizer(["A nodule in the right upper zone. Small left pleural effusion. Normal study."])
    torch.manual_seed(0)
    model = build_model(replace(TINY_PRESETS["tiny-teacher"], vocab_size=len(tok), head_pool=head_pool))
    return Predictor(model, tok, {}, {}, "tiny")


def _heads(channel: str, cell: tuple[int, int]):
    logits = torch.full((1, len(LESION_CHANNELS), 5, 5), -6.0)
    logits[0, LESION_CHANNELS.index(channel), cell[0], cell[1]] = 4.0
    return SimpleNamespace(lesion_logits=logits)


def test_predictor_grounds_only_with_a_lesion_head_and_the_flag_on():
    words = _words("A nodule in the right upper zone.")
    heads = _heads("nodule", (3, 4))
    lesion = _predictor("lesion")
    toks, probs = [list(words)], [[1.0] * len(words)]
    (r,) = lesion.ground_report_locations(heads, ["CXR"], toks, probs)
    assert r is not None and detokenize(toks[0]) == "A nodule in the left lower zone."

    lesion.ground_locations = False
    toks = [list(words)]
    assert lesion.ground_report_locations(heads, ["CXR"], toks, [[1.0] * len(words)]) == [None]
    assert toks[0] == words

    plain = _predictor("avg")  # no lesion head: never touched, even handed a map
    toks = [list(words)]
    assert plain.ground_report_locations(heads, ["CXR"], toks, [[1.0] * len(words)]) == [None]
    assert toks[0] == words


def test_predict_records_grounding_and_a_model_without_lesion_head_is_untouched():
    from model.types import ReportStyle

    study = Study(pixels=np.random.default_rng(0).random((64, 64), dtype=np.float32), modality="CXR")
    style = ReportStyle(max_new_tokens=24)
    lesion = _predictor("lesion")
    pred = lesion.predict(study, style=style)
    assert pred.location_grounded and len(pred.tokens) == len(pred.token_probs)
    assert pred.report == detokenize(pred.tokens)
    lesion.ground_locations = False
    assert not lesion.predict(study, style=style).location_grounded

    plain = _predictor("avg")
    on = plain.predict(study, style=style)
    plain.ground_locations = False
    off = plain.predict(study, style=style)
    assert not on.location_grounded and on.location_edits == []
    assert (on.report, on.token_probs) == (off.report, off.token_probs)


def test_the_served_report_is_unchanged_when_nothing_is_located():
    words = _words("No pleural effusion or pneumothorax. Normal study.")
    r = ground_tokens(words, [0.7] * len(words), "CXR", {c: RIGHT_UPPER for c in LESION_CHANNELS})
    assert list(r.tokens) == words and not r.changed


def test_the_caption_says_where_side_and_zone_come_from():
    from components.prediction_view import location_note
    from model.types import Prediction

    pred = Prediction("t", "CXR", {}, {}, [], "A nodule.", ["A", "nodule", "."], [1.0] * 3, {}, 0.0, False,
                      location_grounded=True, location_edits=["nodule: 'a' -> 'b'"])  # fmt: skip
    note = location_note(pred)
    assert "lesion map" in note and "1 location phrase changed" in note
