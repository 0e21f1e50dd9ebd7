"""Does a report put a finding where it is? Side and zone / lobe stated in a report vs the truth.

Phantoms know where every finding is (``CaseTruth.findings[i].side`` / ``.zone``). A report that says
"consolidation in the right lower zone" makes a checkable claim; this module extracts those claims
and scores them:

- ``side_agreement``: of the true findings whose side the report states, the share stated right
  (contradictory statements, "left" in the findings and "right" in the impression, count wrong);
- ``zone_agreement``: the same for the zone (CXR zone, CT lobe; apex = upper, base = lower,
  perihilar / middle lobe / lingula = middle);
- ``side_recall``: true findings whose side is stated right / all true findings with a side
  (a report that never says where scores 0 here, not "undefined");
- ``invented_rate``: located statements the truth does not support / all located statements, split
  into ``absent_finding`` (the finding is not there at all) and ``wrong_location``;
- ``*_majority_baseline``: what a reporter that always names the commonest true side / zone would
  get, so an agreement near it means the model has not learnt location.

A statement is a clause (sentence split at "," and "and") that the labeler marks positive for a
finding and that names a side or a zone. Cardiomegaly has no location; oedema is bilateral and
perihilar by construction and its "upper lobe venous diversion" is not a location claim: both are
left out. On CT the finding is the tumour (any positive nodule / mass / tumour mention).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from model.types import CaseTruth

#: findings whose location a report states and the truth knows
LOCATED_CXR: tuple[str, ...] = ("pleural_effusion", "pneumothorax", "nodule", "consolidation", "atelectasis")
LOCATED_CT: tuple[str, ...] = ("tumour",)
#: labeler labels that mean "a tumour is described here" on CT
_CT_TUMOUR_LABELS = ("nodule", "tumour_benign", "tumour_malignant")

#: truth / stated zone -> coarse zone (a CT lobe and a CXR zone compare on this scale)
COARSE_ZONE: dict[str, str] = {
    "upper": "upper",
    "apical": "upper",
    "middle": "middle",
    "hilar": "middle",
    "lower": "lower",
    "basal": "lower",
    "diffuse": "diffuse",
}

_CLAUSE_SPLIT = re.compile(r",|;|\band\b")
_BILATERAL = re.compile(r"\b(both|bilateral(ly)?|bibasal)\b")
_LEFT = re.compile(r"\b(left|lingula)\b")
_RIGHT = re.compile(r"\bright\b")
_ZONES: tuple[tuple[str, re.Pattern], ...] = (
    ("upper", re.compile(r"\bupper (zone|lobe)s?\b|\bap(ex|ices|ical)\b")),
    ("middle", re.compile(r"\b(mid|middle) (zone|lobe)s?\b|\blingula\b|\b(peri)?hilar\b")),
    ("lower", re.compile(r"\blower (zone|lobe)s?\b|\bbases?\b|\b(bi)?basal\b")),
    ("diffuse", re.compile(r"\bthroughout\b|\bdiffuse\b")),
)


@dataclass(frozen=True)
class StatedLocation:
    """One located claim of a report: ``name`` at ``side`` / ``zone`` (coarse), from ``clause``."""

    name: str  # a LOCATED_CXR finding, or "tumour" on CT
    side: str | None  # "left" | "right" | "bilateral" | None (not stated)
    zone: str | None  # "upper" | "middle" | "lower" | "diffuse" | None (not stated)
    clause: str


def stated_side(clause: str) -> str | None:
    text = clause.lower()
    left, right = bool(_LEFT.search(text)), bool(_RIGHT.search(text))
    if _BILATERAL.search(text) or (left and right):
        return "bilateral"
    return "left" if left else "right" if right else None


def stated_zone(clause: str) -> str | None:
    text = clause.lower()
    found = [zone for zone, rx in _ZONES if rx.search(text)]
    return found[0] if len(found) == 1 else None  # two zones in one clause: no single claim


def _clauses(text: str) -> list[str]:
    from model.data.labeler import split_sentences

    return [c.strip() for s in split_sentences(text or "") for c in _CLAUSE_SPLIT.split(s) if c.strip()]


def stated_locations(text: str, modality: str) -> list[StatedLocation]:
    """Every located claim of ``text`` (deduplicated: a claim repeated in the impression counts once)."""
    from model.data.labeler import label_report

    out: list[StatedLocation] = []
    for clause in _clauses(text):
        side, zone = stated_side(clause), stated_zone(clause)
        if side is None and zone is None:
            continue
        labels = label_report(clause)
        if modality == "CT":
            names = ["tumour"] if any(labels.get(k) == "positive" for k in _CT_TUMOUR_LABELS) else []
        else:
            names = [n for n in LOCATED_CXR if labels.get(n) == "positive"]
        for name in names:
            claim = StatedLocation(name, side, zone, clause)
            if not any((c.name, c.side, c.zone) == (name, side, zone) for c in out):
                out.append(claim)
    return out


def _truth_locations(truth: CaseTruth) -> dict[str, tuple[str | None, str | None]]:
    located = LOCATED_CT if truth.modality == "CT" else LOCATED_CXR
    return {
        f.name: (f.side, COARSE_ZONE.get(f.zone or "", None))
        for f in truth.findings
        if f.name in located and (f.side or f.zone)
    }


def case_location(truth: CaseTruth, text: str) -> dict:
    """Counts for one report against its truth (summed by :func:`location_agreement`)."""
    where = _truth_locations(truth)
    claims = stated_locations(text, truth.modality)
    c = Counter()
    c["n_truth"] = len(where)
    for name, (side, zone) in where.items():
        mine = [s for s in claims if s.name == name]
        sides = {s.side for s in mine if s.side}
        zones = {s.zone for s in mine if s.zone}
        if sides and side:
            c["side_stated"] += 1
            c["side_correct"] += sides == {side}
        if zones and zone:
            c["zone_stated"] += 1
            c["zone_correct"] += zones == {zone}
    for s in claims:
        c["n_statements"] += 1
        if s.name not in where:
            c["absent_finding"] += 1
            continue
        side, zone = where[s.name]
        if (s.side and side and s.side != side) or (s.zone and zone and s.zone != zone):
            c["wrong_location"] += 1
    return dict(c)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def location_agreement(truths: Sequence[CaseTruth], texts: Sequence[str]) -> dict:
    """Side / zone agreement, recall and invented locations of ``texts`` against ``truths``.

    Returns ``{"findings": {...}, "tumour": {...}}`` (CXR findings, CT tumour), each with the
    ratios above plus their counts (``n_cases``, ``n_truth``, ``side_stated``, ...).
    """
    out = {}
    for group, modality in (("findings", "CXR"), ("tumour", "CT")):
        c: Counter = Counter()
        sides: Counter = Counter()
        zones: Counter = Counter()
        n_cases = 0
        for truth, text in zip(truths, texts, strict=True):
            if truth is None or truth.modality != modality:
                continue
            n_cases += 1
            c.update(case_location(truth, text))
            for side, zone in _truth_locations(truth).values():
                sides[side] += bool(side)
                zones[zone] += bool(zone)
        invented = c["absent_finding"] + c["wrong_location"]
        out[group] = {
            "side_agreement": _ratio(c["side_correct"], c["side_stated"]),
            "zone_agreement": _ratio(c["zone_correct"], c["zone_stated"]),
            "side_recall": _ratio(c["side_correct"], c["n_truth"]),
            "zone_recall": _ratio(c["zone_correct"], c["n_truth"]),
            "side_stated_rate": _ratio(c["side_stated"], c["n_truth"]),
            "invented_rate": _ratio(invented, c["n_statements"]),
            "absent_finding_rate": _ratio(c["absent_finding"], c["n_statements"]),
            "wrong_location_rate": _ratio(c["wrong_location"], c["n_statements"]),
            "side_majority_baseline": _ratio(max(sides.values(), default=0), sum(sides.values())),
            "zone_majority_baseline": _ratio(max(zones.values(), default=0), sum(zones.values())),
            "n_cases": n_cases,
            **{k: int(c[k]) for k in ("n_truth", "side_stated", "side_correct", "zone_stated",
                                      "zone_correct", "n_statements", "absent_finding", "wrong_location")},
        }  # fmt: skip
    return out


def location_protocol() -> dict:
    return {
        "statement": "a clause (sentence split at ',' ';' 'and') the labeler marks positive for a finding "
        "(CT: nodule / mass / tumour) that names a side or one zone",
        "zones": "coarse: upper (upper zone / lobe, apex), middle (mid zone, middle lobe, lingula, perihilar), "
        "lower (lower zone / lobe, base), diffuse",
        "side_agreement": "true findings whose stated side(s) equal the truth / true findings with a stated side",
        "side_recall": "true findings with the side stated right / all true findings with a side",
        "invented_rate": "located statements of an absent finding or at a contradicting side / zone "
        "/ all located statements",
        "majority_baseline": "agreement of always naming the commonest true side / zone",
        "findings": list(LOCATED_CXR),
        "left_out": "cardiomegaly (no location), oedema (bilateral perihilar by construction)",
    }


def headline(block: dict) -> dict:
    """The scalars of a :func:`location_agreement` block for ``metrics.location`` (flat names)."""
    return {
        f"{group}_{key}": block[group][key]
        for group in ("findings", "tumour")
        for key in ("side_agreement", "zone_agreement", "side_recall", "invented_rate")
        if block.get(group, {}).get("n_cases")
    }
