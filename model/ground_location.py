"""Side and zone read from the model's own lesion map, not from the decoder's habits (issue 11, Deliver 3).

The report decoder names a side and a zone / lobe for every located finding, but it learnt them poorly
(every real CT tumour in the "right lower lobe"; on phantoms the teacher's CXR findings were on the right
side 80 % of the time). A model with the lesion head (``ModelConfig.head_pool == "lesion"``) also predicts
where each finding is: one map per ``LESION_CHANNELS`` on its feature grid, trained on the phantoms'
masks. This module reads the side and zone of a finding off that map (:func:`read_location`) and rewrites
the location words of every clause that states that finding to match (:func:`ground_tokens`); where the
map cannot tell, the words are removed rather than guessed ("A 14 mm nodule in the right upper zone." ->
"A 14 mm nodule in the right lung." or "A 14 mm nodule.").

Reading a map (``prob``: (h, w) per-cell probabilities; image columns left -> right, rows top -> bottom):

- weights ``w = max(p - 0.05, 0) ** 2`` (the background of a map is ~0.01, the lesion near its peak);
- side: the image is in the radiological convention (patient right on the image left, as the phantoms
  are drawn: ``phantom_cxr.SIDES``), so the share of ``w`` in the image's right half is the patient's
  left. A share >= ``SIDE_SHARE`` says left, <= 1 - ``SIDE_SHARE`` right. When the weaker half's peak
  is >= ``BILATERAL_RATIO`` of the stronger one the map is on both sides: "bilateral" for a finding that
  can be bilateral (effusion), "cannot tell" for the others;
- zone: the vertical centroid of ``w`` in the image (0 top, 1 bottom) against ``ZONE_CUTS``: above the
  first cut "upper", below the second "lower", between them "cannot tell" (the map is too coarse to put
  a finding in the middle zone reliably); CT: never (see below);
- a map whose peak is below ``LESION_FLAT_P`` shows no lesion: nothing can be told.

The constants were chosen on fresh validation phantoms (seeds 910_000_000..+300, never used by training
or by ``benchmarks/bench_real.py``'s test phantoms at 900_000_000) with the shipped teacher: side stated
for 85 % of CXR and 70 % of CT findings at 0.94 / 0.91 agreement; CXR zone stated for 75 % at 0.97 (upper
vs lower; middle zone not separable). The CT tumour's lobe (front / middle / back third of the lung at the
slice) is not readable from the 5 x 5 map: no pair of cuts reached 0.80 agreement (best 0.77, and even
the true mask's centroid overlaps across thirds), so CT reports keep the side and drop the lobe
("in the right lung"). The KD student's map does not localise (most of its maps cover both sides): its
reports mostly lose their location words, which is what "cannot tell" means.

Token probabilities: a rewritten phrase's tokens get the lowest probability of the words they replace
(the decoder's confidence in that location, never raised by the rewrite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.evaluate.location import LOCATED_CXR

#: a map whose peak probability is below this shows no lesion (``gradcam.LESION_FLAT_P``)
FLAT_P = 0.1
#: background subtracted from a map before it is weighed (squared: the peak dominates)
BACKGROUND_P = 0.05
#: share of the map's weight on one side of the image needed to name that side
SIDE_SHARE = 0.75
#: the weaker half's peak / the stronger half's peak at or above which the map is on both sides
BILATERAL_RATIO = 0.6
#: findings that can be on both sides (the phantoms: effusion; oedema is bilateral by construction)
CAN_BE_BILATERAL: frozenset[str] = frozenset({"pleural_effusion", "edema"})
#: vertical centroid (0 = image top) cuts per modality: (< upper, > lower); None: the zone is never read
ZONE_CUTS: dict[str, tuple[float, float] | None] = {"CXR": (0.36, 0.48), "CT": None}
#: labeler labels of a CT tumour clause (``model.evaluate.location``)
_CT_TUMOUR_LABELS = ("nodule", "tumour_benign", "tumour_malignant")
#: labeler values that state a finding (an uncertain mention still places it)
_STATES = ("positive", "uncertain")

_SIDES = {"left", "right", "bilateral", "both"}
_ZONE_ADJ = {"upper": "upper", "mid": "middle", "middle": "middle", "lower": "lower"}
_ZONE_NOUN = {"zone", "zones", "lobe", "lobes"}
_POINT_NOUN = {"base": "lower", "bases": "lower", "apex": "upper", "apices": "upper"}
_ZONE_WORD = {"apical": "upper", "basal": "lower", "bibasal": "lower"}  # adjectives ("apical rim")
_PREPS = {"in", "at", "within", "of", "involving"}
_CLAUSE_BREAK = {",", ";", "and", "."}


@dataclass(frozen=True)
class MapLocation:
    """Where one lesion map puts its finding; None = the map cannot tell."""

    side: str | None  # "left" | "right" | "bilateral" | None
    zone: str | None  # "upper" | "middle" | "lower" | None
    peak: float  # the map's highest probability


def read_location(prob: np.ndarray, modality: str, channel: str) -> MapLocation:
    """Side and zone of ``channel``'s finding from its (h, w) probability map (module docstring)."""
    p = np.asarray(prob, dtype=np.float64)
    peak = float(p.max()) if p.size else 0.0
    if p.ndim != 2 or not np.isfinite(p).all() or peak < FLAT_P:
        return MapLocation(None, None, peak)
    h, w = p.shape
    x = np.clip(p - BACKGROUND_P, 0, None) ** 2
    total = float(x.sum())
    if total <= 0:
        return MapLocation(None, None, peak)
    centres = (np.arange(w) + 0.5) / w
    right_image = np.clip((centres - 0.5) * w + 0.5, 0, 1)  # a middle column counts half to each side
    patient_left = float((x * right_image[None]).sum() / total)
    peak_l, peak_r = float(p[:, centres > 0.5].max()), float(p[:, centres < 0.5].max())  # image halves
    both = min(peak_l, peak_r) / max(peak_l, peak_r) >= BILATERAL_RATIO
    if both and channel in CAN_BE_BILATERAL and 1 - SIDE_SHARE < patient_left < SIDE_SHARE:
        side = "bilateral"
    elif both:
        side = None
    else:
        side = "left" if patient_left >= SIDE_SHARE else "right" if patient_left <= 1 - SIDE_SHARE else None
    zone = None
    cuts = ZONE_CUTS.get(modality)
    if cuts is not None:
        row = float((x.sum(1) * (np.arange(h) + 0.5) / h).sum() / total)
        zone = "upper" if row < cuts[0] else "lower" if row > cuts[1] else None
    return MapLocation(side, zone, peak)


def clause_channel(text: str, modality: str) -> str | None:
    """The lesion channel a clause states (CXR: its first located finding; CT: the tumour), else None."""
    from model.data.labeler import label_report

    labels = label_report(text)
    if modality == "CT":
        return "tumour" if any(labels.get(k) in _STATES for k in _CT_TUMOUR_LABELS) else None
    return next((n for n in LOCATED_CXR if labels.get(n) in _STATES), None)


# ----------------------------------------------------------------------------------------------
# Rewriting the words


def _lobe_words(side: str | None, zone: str) -> list[str]:
    if zone == "middle":
        return (
            ["lingula"]
            if side == "left"
            else ["right", "middle", "lobe"]
            if side == "right"
            else ["middle", "lobe"]
        )
    return ([side] if side in ("left", "right") else []) + [zone, "lobe"]


def _render_place(
    modality: str, kind: str, prep: str | None, side: str | None, zone: str | None
) -> list[str]:
    """The words of a prepositional location ("in the right upper zone") for the read side / zone."""
    if side is None and zone is None:
        return []
    prep = prep or "in"
    both = side == "bilateral"
    if zone is None:  # only the side is known
        return (
            [prep if prep != "at" else "in", "both", "lungs"]
            if both
            else [prep if prep != "at" else "in", "the", side, "lung"]
        )
    if modality == "CT" or kind == "lobe":
        if both:
            return [prep, "both", zone, "lobes"]
        return [prep, "the", *_lobe_words(side, zone)]
    if kind == "point" and zone != "middle":  # "at the left base" / "at both apices"
        noun = {"lower": ("base", "bases"), "upper": ("apex", "apices")}[zone]
        return ["at", "both", noun[1]] if both else ["at", "the", *([side] if side else []), noun[0]]
    adj = "mid" if zone == "middle" else zone
    if both:
        return [prep if prep != "at" else "in", "both", adj, "zones"]
    return [prep if prep != "at" else "in", "the", *([side] if side else []), adj, "zone"]


def _render_attributive(modality: str, kind: str, side: str | None, zone: str | None) -> list[str]:
    """The words of a location used as an adjective ("right lower zone consolidation")."""
    if zone is None:
        return [] if side is None else ["bilateral"] if side == "bilateral" else [side, "lung"]
    if modality == "CT" or kind == "lobe":
        return (["bilateral"] if side == "bilateral" else []) + _lobe_words(
            None if side == "bilateral" else side, zone
        )
    adj = "mid" if zone == "middle" else zone
    return (["bilateral"] if side == "bilateral" else [side] if side else []) + [adj, "zone"]


def _match_place(low: Sequence[str], i: int) -> tuple[int, str, bool] | None:
    """A location phrase starting at ``low[i]``: (end, kind, prepositional) or None.

    kinds: "zone" / "lobe" (upper|mid|lower zone|lobe), "point" (base, apex), "hilar" (perihilar
    region), "lingula", "lung" (throughout the left lung)."""
    j = i
    prep = low[j] in _PREPS
    if prep:
        j += 1
        if j < len(low) and low[j] in ("the", "both"):
            j += 1
    elif low[j] == "the":
        return None
    k = j
    if k < len(low) and low[k] in _SIDES:
        k += 1
    if k + 1 < len(low) and low[k] in _ZONE_ADJ and low[k + 1] in _ZONE_NOUN:
        return k + 2, "lobe" if low[k + 1].startswith("lobe") else "zone", prep
    if k < len(low) and low[k] in _POINT_NOUN and (prep or k > j):
        return k + 1, "point", prep
    if k < len(low) and low[k] == "perihilar" and (prep or k > j):
        return k + 2 if k + 1 < len(low) and low[k + 1] == "region" else k + 1, "hilar", prep
    if k < len(low) and low[k] == "lingula":
        return k + 1, "lingula", prep
    if prep and k > j and k < len(low) and low[k] in ("lung", "lungs", "hemithorax"):
        return k + 1, "lung", prep
    return None


def rewrite_clause(
    tokens: Sequence[str], modality: str, where: MapLocation, probs: Sequence[float] | None = None
) -> tuple[list[str], list[float]] | None:
    """``tokens`` (one clause) with its location words set to ``where``: (words, probabilities), or None
    when the clause names no location. A phrase whose side and zone both cannot be told is removed; the
    words that replace a phrase get the lowest probability of the words they replace."""
    probs = [1.0] * len(tokens) if probs is None else [float(p) for p in probs]
    low = [t.lower() for t in tokens]
    out: list[str] = []
    out_p: list[float] = []
    changed = False
    i = 0
    while i < len(low):
        m = _match_place(low, i)
        if m is not None:
            end, kind, prep = m
            if prep:
                new = _render_place(modality, kind, low[i], where.side, where.zone)
            else:
                new = _render_attributive(modality, kind, where.side, where.zone)
        elif low[i] in ("left", "right", "bilateral"):
            end, new = i + 1, [] if where.side is None else [where.side]
        elif low[i] in _ZONE_WORD:  # "apical rim", "bibasal atelectasis"
            end, new = (
                i + 1,
                [{"upper": "apical", "lower": "basal"}[where.zone]]
                if where.zone in ("upper", "lower")
                else [],
            )
        else:
            out.append(tokens[i])
            out_p.append(probs[i])
            i += 1
            continue
        changed = True
        if i == 0 and tokens[0][:1].isupper():  # the sentence's first word: keep it capitalised
            if new:
                new[0] = new[0][:1].upper() + new[0][1:]
            elif end < len(tokens):
                tokens = [*tokens[:end], tokens[end][:1].upper() + tokens[end][1:], *tokens[end + 1 :]]
        out += new
        out_p += [min(probs[i:end])] * len(new)
        i = end
    return (out, out_p) if changed else None


def _clause_spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for i, t in enumerate(tokens):
        if t.lower() in _CLAUSE_BREAK:
            if i > start:
                spans.append((start, i))
            start = i + 1
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


@dataclass(frozen=True)
class GroundResult:
    """The report's words after grounding its locations, and what was changed."""

    tokens: tuple[str, ...]
    token_probs: tuple[float, ...]
    changed: tuple[str, ...] = ()  # "nodule: right upper -> left ?" per rewritten clause
    grounded: bool = True  # the map was read (False: no lesion head, nothing done)


def ground_tokens(
    tokens: Sequence[str],
    token_probs: Sequence[float],
    modality: str,
    maps: Mapping[str, np.ndarray],
) -> GroundResult:
    """Rewrite the location words of every clause stating a located finding to what ``maps`` (channel ->
    (h, w) probability) say; a clause of a finding without a map is left alone."""
    from model.evaluate.location import stated_side, stated_zone
    from model.networks.tokenizer import detokenize

    toks, probs = list(tokens), [float(p) for p in token_probs]
    changes: list[str] = []
    # right to left, so the spans still to rewrite keep their indices
    for a, b in reversed(_clause_spans(toks)):
        clause = toks[a:b]
        text = detokenize(clause)
        if (
            stated_side(text) is None
            and stated_zone(text) is None
            and not any(t.lower() in _ZONE_WORD for t in clause)
        ):
            continue
        channel = clause_channel(text, modality)
        if channel is None or channel not in maps:
            continue
        where = read_location(maps[channel], modality, channel)
        rewritten = rewrite_clause(clause, modality, where, probs[a:b])
        if rewritten is None or not rewritten[0] or rewritten[0] == clause:
            continue  # nothing named, nothing changed, or nothing would be left of the clause
        new, new_p = rewritten
        toks[a:b] = new
        probs[a:b] = new_p
        changes.append(f"{channel}: {text!r} -> {detokenize(new)!r}")
    return GroundResult(tuple(toks), tuple(probs), tuple(reversed(changes)))


def lesion_maps(heads, row: int) -> dict[str, np.ndarray] | None:
    """channel -> (h, w) probability map of batch row ``row``; None for a model without a lesion head."""
    import torch

    from model.types import LESION_CHANNELS

    logits = getattr(heads, "lesion_logits", None)
    if logits is None:
        return None
    prob = torch.sigmoid(logits[row].float()).cpu().numpy()  # (K, h, w)
    return {c: prob[k] for k, c in enumerate(LESION_CHANNELS)}
