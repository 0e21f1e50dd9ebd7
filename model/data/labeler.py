"""Report text -> per-finding label: positive / negative / uncertain / not mentioned (None).

A rule-based labeler in the style of NegBio (Peng et al. 2018) and the CheXpert labeler (Irvin et
al. 2019), without a parser: it works on our own generated reports and on reports written by people
(IU X-Ray, MIMIC-CXR style), so clinical-efficacy metrics can be computed on any text.

Steps, per sentence:

1. **Split** the text into sentences (". ", "!", "?", new lines; decimals like "0.58" stay whole)
   and each sentence into clauses at contrast words ("but", "however", "although", "whereas",
   "except", "apart from", "other than", "which", ";" and ":"). No scope crosses a clause boundary.
2. **Mentions**: each observation has regular expressions for its names and synonyms
   (``OBSERVATIONS``), minus exclusions ("pericardial effusion" is not a pleural effusion, "nodular
   opacity" is not airspace disease). Some observations also have *anchors*, neutral nouns that only
   count as a positive mention together with an attribute in the same comma-segment: "heart size" /
   "cardiac silhouette" + "enlarged" is cardiomegaly, while "Heart size is normal" is a negative and
   "Heart size is stable" is not a mention at all.
3. **Triggers** (``TRIGGERS``) with a direction: *pre* triggers scope forward ("no", "without",
   "free of", "negative for", "absence of", "no evidence of", "rather than", "resolved", "possible",
   "may represent", "cannot exclude", "suggestive of", ...), *post* triggers scope backward to the
   previous comma ("... is normal", "... is not seen", "... has resolved", "... cannot be excluded",
   "... is likely"). A forward scope runs over lists ("No pleural effusion, pneumothorax or
   consolidation") and stops at a comma or "and" that opens a new clause ("No effusion, the heart is
   enlarged"). *Pseudo* triggers take the words away from real ones: "no change in the large
   effusion", "no interval change", "no increase" mention a finding that is still there (positive).
   Overlapping triggers: the longest wins ("cannot be excluded" over "not"); a mention covered by
   several scopes takes the nearest trigger.
   Scope ends found on real reports (issue 11): "with" ends a forward scope ("no effusion with bilateral
   small nodules": the nodules are present); so does a comma- or "and"-segment that opens with a
   temporal or severity word ("No effusion or pneumothorax, stable, mild cardiomegaly"); a negation
   runs up to 20 words so "No A to suggest B or C blunting to suggest D" negates D too; "evaluation
   for X is limited" / "assess for" / "rule out" make X uncertain, not positive.
4. **Aggregate** mentions per observation: positive > uncertain > negative > None, as CheXpert does.

Decisions (documented because reasonable labelers differ):

- "likely", "probably", "suspected", "top normal" are *uncertain*; "consistent with", "in keeping with",
  "compatible with" are *positive*. "Borderline" follows ``LabelerConfig.borderline`` (default
  *positive*: readers count "borderline cardiomegaly" as present).
- "Lungs are clear" (also "lungs are otherwise clear", "clear lungs") implies consolidation
  (and CheXpert Lung Opacity) *negative*; nothing else (a clear-lung report may still have a
  nodule or atelectasis mentioned elsewhere, and an explicit mention always wins by aggregation).
  "Costophrenic angles are sharp" implies pleural effusion negative.
- Synonyms that reasonable labelers count differently are a table, ``SYNONYMS``, switched by
  ``LabelerConfig`` (defaults: CheXpert-like and conservative, i.e. a word counts for a finding only
  when it names that finding). "opacity" / "opacification" / "infiltrate" / "airspace disease" are
  Lung Opacity, *not* consolidation (``opacity_as_consolidation=False``); "granuloma" is an old
  healed infection, *not* a nodule nor a benign tumour (``granuloma_as_nodule=False``); "vascular /
  pulmonary / venous congestion", "engorgement", "redistribution", "cephalization" are pulmonary venous
  hypertension, *not* oedema (``congestion_as_edema=False``); "pneumonia" *is* consolidation
  (``pneumonia_as_consolidation=True``, as NIH's Pneumonia label maps in ``sources.py``). Issue 11
  measured the permissive choices (all three on, before this table) on real radiology reports:
  precision nodule 0.25, consolidation 0.41, oedema 0.47. ``sources.report_finding_targets`` makes a
  finding that only a broad word suggests *unknown* for training, not negative. "Nodular" / "linear" / "reticular" / "interstitial" / "ground glass"
  opacities never count as consolidation (CheXpert Lung Opacity only).
- Uncertain policy (``LabelerConfig.uncertain``): "uncertain" is kept by default; "positive" (U-Ones)
  or "negative" (U-Zeros) map it after aggregation, as in the CheXpert paper.
- ``tumour_malignant``: radiologists report malignancy as a suspicion pending histology, so
  "suspicious for / concerning for / suggestive of malignancy" counts as *positive* for it
  ("possible malignancy" stays uncertain). "Spiculated" is a malignant mention; "benign",
  "granuloma", "hamartoma", "calcified nodule" are benign mentions.
- ``normal`` is "positive" when no observation other than support devices is positive or
  uncertain, else "negative" (None only for empty text). CheXpert "No Finding" is "positive" in the
  same case and None otherwise, as in the CheXpert labeler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.types import FINDINGS

POSITIVE, NEGATIVE, UNCERTAIN = "positive", "negative", "uncertain"
_RANK = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1, None: 0}

#: The 14 CheXpert observations, in the CheXpert order.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: Labels ``label_report`` returns: our findings, the CT tumour classes, and "normal".
REPORT_LABELS: tuple[str, ...] = (*FINDINGS, "tumour_benign", "tumour_malignant", "normal")


@dataclass(frozen=True)
class LabelerConfig:
    """Synonym and uncertainty choices (module docstring). Defaults: CheXpert-like, conservative."""

    opacity_as_consolidation: bool = False  # "opacity", "infiltrate", "airspace disease" -> consolidation
    granuloma_as_nodule: bool = False  # "granuloma" -> nodule (and a benign tumour on CT)
    congestion_as_edema: bool = False  # "vascular congestion", "cephalization" ... -> oedema
    pneumonia_as_consolidation: bool = True  # "pneumonia", "infection" -> consolidation
    borderline: str = POSITIVE  # "borderline cardiomegaly": POSITIVE or UNCERTAIN
    uncertain: str = UNCERTAIN  # output for uncertain labels: UNCERTAIN (keep), POSITIVE or NEGATIVE

    def __post_init__(self) -> None:
        if self.borderline not in (POSITIVE, UNCERTAIN):
            raise ValueError(f"borderline must be {POSITIVE!r} or {UNCERTAIN!r}, not {self.borderline!r}")
        if self.uncertain not in (UNCERTAIN, POSITIVE, NEGATIVE):
            raise ValueError(f"uncertain must be one of uncertain/positive/negative, not {self.uncertain!r}")


DEFAULT_CONFIG = LabelerConfig()

#: Which internal observations count for which label of ``label_report``: (label, observation, switch).
#: ``switch`` names the LabelerConfig field that turns the synonym on (None: always counted).
SYNONYMS: tuple[tuple[str, str, str | None], ...] = (
    ("consolidation", "consolidation", None),
    ("consolidation", "pneumonia", "pneumonia_as_consolidation"),
    ("consolidation", "airspace_opacity", "opacity_as_consolidation"),
    ("nodule", "nodule", None),
    ("nodule", "granuloma", "granuloma_as_nodule"),
    ("tumour_benign", "tumour_benign", None),
    ("tumour_benign", "granuloma", "granuloma_as_nodule"),
    ("edema", "edema", None),
    ("edema", "vascular_congestion", "congestion_as_edema"),
)

#: A negated broader term negates the narrower finding even when the synonym is off: "no airspace
#: opacity" means no consolidation, while "opacity" alone does not mean consolidation. (label, observation)
NEGATIVE_IMPLIES: tuple[tuple[str, str], ...] = (("consolidation", "airspace_opacity"),)


# ----------------------------------------------------------------------------------------------
# Observations: what a mention looks like


@dataclass(frozen=True)
class Observation:
    """One thing a report can mention, with its patterns (regular expressions on lower-case text)."""

    name: str
    mentions: tuple[str, ...]  # a match is a mention
    exclude: tuple[str, ...] = ()  # a mention overlapping one of these is not a mention
    anchors: tuple[str, ...] = ()  # neutral nouns ("heart size"): positive only with an attribute
    attributes: tuple[str, ...] = ()  # words that make an anchor positive ("enlarged")
    suspicion_is_positive: bool = False  # "suspicious for X" -> positive (malignancy, see docstring)


_ENLARGED = (r"\benlarge\w*", r"\bincreased\b", r"\bprominen\w*", r"\bwiden\w*")

OBSERVATIONS: tuple[Observation, ...] = (
    Observation(
        "cardiomegaly",
        mentions=(
            r"\bcardiomegaly\b",
            r"\bcardiac enlargement\b",
            r"\benlarged (heart|cardiac (silhouette|shadow|contour|size))\b",
            r"\benlargement of the (heart|cardiac silhouette)\b",
        ),
        exclude=(r"\bheart failure\b", r"\bheart (valve|rate)\b"),
        anchors=(
            r"\bheart size\b",
            r"\bcardiac (size|silhouette|shadow|contour)s?\b",
            r"\bheart\b",
            r"\bcardiomediastinal (silhouette|contours?|shadow)\b",
        ),
        # "heart size is borderline": the "borderline" trigger decides (LabelerConfig.borderline)
        attributes=(*_ENLARGED[:3], r"\bborderline\b"),
    ),
    Observation(
        "enlarged_cardiomediastinum",
        mentions=(
            r"\bmediastinal widening\b",
            r"\bwidened (superior )?mediastinum\b",
            r"\bwidening of the (superior )?mediastinum\b",
            r"\benlarged cardiomediastinum\b",
        ),
        anchors=(
            r"\bcardiomediastinal (silhouette|contours?|shadow)\b",
            r"\bmediastinal (contours?|silhouette)\b",
            r"\bmediastinum\b",
        ),
        attributes=_ENLARGED,
    ),
    Observation(
        "pleural_effusion",
        mentions=(
            r"\beffusions?\b",
            r"\bpleural fluid\b",
            r"\bhydro(pneumo)?thora(x|ces)\b",
            r"\bfluid in the (\w+ )?pleural\b",
            r"\bblunt\w* (of )?(the |both )?(\w+ )?costophrenic\b",
        ),
        exclude=(r"\bpericardial effusions?\b", r"\bjoint effusions?\b"),
    ),
    Observation("pneumothorax", mentions=(r"\b(hydro)?pneumothora(x|ces)\b", r"\bptx\b")),
    Observation(
        "nodule",
        mentions=(
            r"\bnodul\w*",
            r"\bmass(es)?\b",
            r"\blesions?\b",
            r"\bneoplasm\w*",
            r"\btumou?rs?\b",
            r"\bhamartomas?\b",
            r"\bcarcinoma\b",
        ),
        exclude=(
            r"\bmass effect\b",
            r"\b(lytic|sclerotic|bone|bony|osseous|skin|cutaneous) lesions?\b",
            r"\bsoft tissue mass\b",
            r"\bgranulomatous nodul\w*",  # counted with "granuloma" (LabelerConfig.granuloma_as_nodule)
        ),
    ),
    Observation("granuloma", mentions=(r"\bgranulomas?\b", r"\bgranulomatous( nodul\w*)?")),
    Observation("consolidation", mentions=(r"\bconsolidat\w*",)),
    Observation(
        "pneumonia",
        mentions=(
            r"\b(broncho)?pneumonias?\b",
            r"\binfection\b",
            r"\binfectious process\b",
            r"\bpneumonitis\b",
        ),
    ),
    Observation(
        "airspace_opacity",
        mentions=(
            r"\bair[- ]?space (disease|opacit(y|ies)|opacification|shadowing|process)\b",
            r"\binfiltrat\w*",
            r"\bopacit(y|ies)\b",
            r"\bopacifi\w*",
        ),
        exclude=(
            r"\b(nodular|linear|reticular|reticulonodular|interstitial|band[- ]?like|plate[- ]?like|streaky"
            r"|discoid|calcified|ground[- ]glass|subsegmental) opacit(y|ies)\b",
        ),
    ),
    Observation(
        "lung_opacity_other",
        mentions=(
            r"\bhaz(y|iness)\b",
            r"\bdensit(y|ies)\b",
            r"\b(reticular|reticulonodular|interstitial|ground[- ]glass|linear|streaky) opacit(y|ies)\b",
            r"\binterstitial (markings|prominence|thickening|process)\b",
            r"\bshadowing\b",
        ),
        exclude=(r"\bbone density\b",),
    ),
    Observation(
        "edema",
        mentions=(
            r"\bo?edema\w*",
            r"\bkerley\b",
            r"\bseptal lines\b",
            r"\bfluid overload\b",
        ),
        exclude=(r"\b(soft tissue|subcutaneous|bone marrow|chest wall) o?edema\b",),
        # "pulmonary vascularity is normal": negative; an attribute ("increased") is congestion, below
        anchors=(r"\bpulmonary (vascularity|vasculature)\b", r"\bvascular markings\b"),
    ),
    Observation(
        "vascular_congestion",
        mentions=(
            r"\b(vascular|pulmonary|venous) (congestion|engorgement)\b",
            r"\b(vascular|venous) (redistribution|diversion)\b",
            r"\bcephali[sz]ation\b",
            r"\bcongestive\b(?! heart)",
        ),
        anchors=(r"\bpulmonary (vascularity|vasculature)\b", r"\bvascular markings\b"),
        attributes=(r"\bcongest\w*", r"\bengorg\w*", r"\bprominen\w*", r"\bincreased\b", r"\bindistinct\b"),
    ),
    Observation(
        "atelectasis",
        mentions=(r"\batelecta\w*", r"\bcollapsed?\b", r"\bvolume loss\b"),
        exclude=(r"\b(vertebral|vertebra|compression) (body )?collapse\b", r"\bcollapsed? lung\b"),
    ),
    Observation(
        "pleural_other",
        mentions=(
            r"\bpleural (thickening|plaques?|scar\w*|calcification)\b",
            r"\bfibrothorax\b",
            r"\bapical (pleural )?cap\b",
        ),
    ),
    Observation("fracture", mentions=(r"\bfractur\w*",)),
    Observation(
        "support_devices",
        mentions=(
            r"\b(endotracheal|tracheostomy|et|enteric|feeding|nasogastric|ng|og|orogastric|chest|dobhoff) tubes?\b",
            r"\b(central venous|picc|central|midline|swan[- ]ganz|dialysis) (line|catheter)s?\b",
            r"\bpicc\b",
            r"\bcatheters?\b",
            r"\bpacemakers?\b",
            r"\bpacer\b",
            r"\ba?icd\b",
            r"\bdefibrillator\b",
            r"\b(sternotomy|sternal) wires?\b",
            r"\bsurgical clips?\b",
            r"\bstents?\b",
            r"\bport-?a-?cath\b",
            r"\bdevices?\b",
            r"\bdrains?\b",
        ),
    ),
    Observation(
        "tumour_malignant",
        mentions=(
            r"\bmalignan\w*",
            r"\bcarcinoma\b",
            r"\bcancer\b",
            r"\bmetasta\w*",
            r"\bspiculat\w*",
            r"\bbronchogenic\b",
        ),
        suspicion_is_positive=True,
    ),
    Observation(
        "tumour_benign",
        mentions=(
            r"\bbenign\w*",
            r"\bhamartomas?\b",
            r"\bcalcified (nodule|lesion)s?\b",
        ),
    ),
)

#: Statements that negate an observation without naming it: (pattern, observations).
IMPLIED_NEGATIVES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        r"\blungs? (are |is |remain |appear )?(otherwise )?(clear|clean)\b|\bclear lungs\b",
        ("consolidation", "airspace_opacity"),
    ),
    (
        r"\bcostophrenic (angles?|sulci|recesses) (are |is |remain )?(sharp|clear|preserved|normal)\b"
        r"|\bsharp costophrenic\b",
        ("pleural_effusion",),
    ),
)


# ----------------------------------------------------------------------------------------------
# Triggers: negation, uncertainty and pseudo-negation


@dataclass(frozen=True)
class Trigger:
    """A cue word and its scope."""

    pattern: str
    kind: str  # "neg" | "unc" | "pseudo" | "borderline" (LabelerConfig.borderline decides)
    direction: str = "pre"  # "pre" (forward), "post" (backward) or "both"
    lists: bool = True  # a forward scope runs on over comma-separated lists
    max_words: int = 12  # forward scope length cap
    suspicion: bool = False  # "suspicious for": positive for observations with suspicion_is_positive


def _t(patterns: str, kind: str, **kw) -> list[Trigger]:
    """One Trigger per top-level alternative of ``patterns`` (so each has its own span length)."""
    parts, depth, cur = [], 0, ""
    for ch in patterns:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [Trigger(rf"\b{p}\b", kind, **kw) for p in parts]


TRIGGERS: tuple[Trigger, ...] = tuple(
    # pseudo-negations: a "no" that does not negate what follows
    _t(
        "no (significant |substantial |definite |appreciable )?(interval )?change|not (significantly )?changed"
        "|without (interval )?change|no (significant )?(increase|decrease|progression)|not only"
        "|no further change|gram negative",
        "pseudo",
    )
    # negation, forward over lists (20 words: "No A to suggest B or C blunting to suggest D" negates D)
    + _t(
        "no|not|without|free of|negative for|absence of|absent|no (radiographic |definite )?evidence of"
        "|no signs? of|no features of|rather than|instead of|resolution of|resolved|clear of|nor|neither"
        "|never|no new|no longer|excluding|ruled out",
        "neg",
        max_words=20,
    )
    # negation, forward within a few words ("normal heart size", "clear lungs")
    + _t("normal|clear|unremarkable", "neg", direction="both", lists=False, max_words=4)
    # negation, backward ("heart size is normal", "pneumothorax has resolved")
    + _t(
        "within normal limits|(is|are|was|were) (not|no longer) (seen|identified|present|visualized|visualised"
        "|evident|demonstrated|appreciated|visible)|not (seen|identified|present|visualized|visualised|evident"
        "|demonstrated|appreciated)|(has|have) (resolved|cleared)|cleared|(is|are) absent|(is|are) excluded"
        "|(is|are) ruled out|(is|are) negative",
        "neg",
        direction="post",
    )
    # uncertainty, forward
    + _t(
        "possible|possibly|probable|probably|questionable|question of|suspected|suspicion of|presumed"
        "|may represent|may reflect|may be|might|might represent|could represent|could reflect|could be|may"
        "|cannot exclude|can ?not exclude|can't exclude|cannot rule out|can ?not rule out"
        "|differential (diagnosis )?(includes|include|of)|possibility of|equivocal|indeterminate",
        "unc",
    )
    + _t("top normal|upper limits? of normal", "unc", direction="both", lists=False, max_words=4)
    + _t("borderline", "borderline", direction="both", lists=False, max_words=4)
    # not assessed: "evaluation for pneumothorax is limited", "rule out pneumonia" (uncertain, not positive)
    + _t(
        "(limited )?(evaluation|assessment) for|limited (evaluation|assessment) of"
        "|(to )?(evaluate|assess) for|rule out|r/o|to exclude",
        "unc",
        lists=True,
    )
    + _t(
        "(is|are) limited|(is|are) not (well )?(assessed|evaluated)|cannot be (assessed|evaluated)"
        "|difficult to (assess|evaluate)",
        "unc",
        direction="post",
    )
    + _t(
        "(highly |very )?suspicious (for|of)|concerning for|concern for|suggestive of|suggesting|suggests",
        "unc",
        suspicion=True,
    )
    + _t("likely|versus|vs", "unc", direction="both", lists=False, max_words=5)
    # uncertainty, backward
    + _t(
        "cannot be excluded|can ?not be excluded|cannot be ruled out|can ?not be ruled out|not (entirely )?excluded"
        "|not ruled out|(is|are) (possible|suspected|questioned|likely|not excluded)|may be present",
        "unc",
        direction="post",
    )
)

# ----------------------------------------------------------------------------------------------
# Text splitting

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+|(?<=[a-z%)])\.(?=[A-Z])")
_CLAUSE_END = re.compile(
    r";|:|\b(but|however|although|though|whereas|yet|except|apart from|aside from|other than|which|who)\b"
)
_BOUNDARY = re.compile(r",|\band\b")  # where a forward scope may end (see _forward_end)
_NEW_CLAUSE = re.compile(
    r"^\s*(the|there|this|these|it|a|an|with|heart|lungs?)\b"
    r"|^\s*\w+(\s+\w+)?\s+(is|are|was|were|has|have|remains?|appears?|demonstrates?|shows?)\b"
    # a temporal or severity word opens a statement of what is there: "No effusion, stable, mild cardiomegaly"
    r"|^\s*(stable|unchanged|persistent|persisting|new|newly|again|redemonstrat\w*|increas\w*|decreas\w*"
    r"|improv\w*|worse\w*|worsen\w*|mild|mildly|moderate|moderately|severe|severely|small|large|trace"
    r"|minimal|minimally|marked|markedly|slight|slightly|enlarged|bilateral|chronic)\b"
)
_SCOPE_STOP = re.compile(r"\bwith\b")  # "no X with bilateral small Y": Y is present
_WORD = re.compile(r"\S+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report (periods inside numbers such as 0.58 do not split)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _clauses(sentence: str) -> list[str]:
    out, start = [], 0
    for m in _CLAUSE_END.finditer(sentence):
        out.append(sentence[start : m.start()])
        start = m.end()
    out.append(sentence[start:])
    return [c for c in out if c.strip()]


_OBS_RE = {
    o.name: (
        [re.compile(p) for p in o.mentions],
        [re.compile(p) for p in o.exclude],
        [re.compile(p) for p in o.anchors],
        [re.compile(p) for p in o.attributes],
    )
    for o in OBSERVATIONS
}
_OBS = {o.name: o for o in OBSERVATIONS}
_TRIG_RE = [(re.compile(t.pattern), t) for t in TRIGGERS]
_IMPLIED_RE = [(re.compile(p), names) for p, names in IMPLIED_NEGATIVES]


@dataclass(frozen=True)
class _Scope:
    start: int
    end: int
    trigger: Trigger
    at: int  # the trigger's position, to find the nearest one


def _forward_end(clause: str, start: int, trig: Trigger) -> int:
    """Where a forward scope starting at ``start`` ends."""
    end = len(clause)
    words = list(_WORD.finditer(clause, start))
    if len(words) > trig.max_words:
        end = words[trig.max_words - 1].end()
    stop = _SCOPE_STOP.search(clause, start, end)
    if stop:
        end = stop.start()
    for b in _BOUNDARY.finditer(clause, start, end):
        if not trig.lists and b.group() == ",":
            return b.start()
        nxt = _BOUNDARY.search(clause, b.end())
        segment = clause[b.end() : nxt.start() if nxt else len(clause)]
        if _NEW_CLAUSE.search(segment) and not re.match(r"\s*(or|nor)\b", segment):
            return b.start()
    return end


def _backward_start(clause: str, end: int) -> int:
    comma = clause.rfind(",", 0, end)
    return comma + 1 if comma >= 0 else 0


def _scopes(clause: str) -> list[_Scope]:
    """Triggers found in the clause (longest first, no overlaps) and the spans they cover."""
    found = [(m.start(), m.end(), t) for rx, t in _TRIG_RE for m in rx.finditer(clause)]
    found.sort(key=lambda x: (-(x[1] - x[0]), x[0]))
    taken: list[tuple[int, int]] = []
    scopes = []
    for s, e, t in found:
        if any(s < te and ts < e for ts, te in taken):
            continue
        taken.append((s, e))
        if t.kind == "pseudo":
            continue
        if t.direction in ("pre", "both"):
            scopes.append(_Scope(e, _forward_end(clause, e, t), t, e))
        if t.direction in ("post", "both"):
            scopes.append(_Scope(_backward_start(clause, s), s, t, s))
    return scopes


def _status(
    spans: list[tuple[int, int]], scopes: list[_Scope], obs: Observation, cfg: LabelerConfig = DEFAULT_CONFIG
) -> str:
    """Label of one mention (its spans: the words themselves, or an anchor and its attribute)."""
    best, best_dist = None, None
    for sc in scopes:
        for s, e in spans:
            if sc.start <= s and e <= sc.end:
                dist = abs((s if sc.at <= s else e) - sc.at)
                if best_dist is None or dist < best_dist:
                    best, best_dist = sc.trigger, dist
    if best is None:
        return POSITIVE
    if best.kind == "neg":
        return NEGATIVE
    if best.kind == "borderline":
        return cfg.borderline
    return POSITIVE if (best.suspicion and obs.suspicion_is_positive) else UNCERTAIN


def _matches(regexes, text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for rx in regexes for m in rx.finditer(text)]


def _segment_of(clause: str, pos: int) -> tuple[int, int]:
    start = clause.rfind(",", 0, pos) + 1
    end = clause.find(",", pos)
    return start, (len(clause) if end < 0 else end)


def _label_clause(clause: str, out: dict[str, str | None], cfg: LabelerConfig) -> None:
    scopes = _scopes(clause)

    def put(name: str, status: str) -> None:
        if _RANK[status] > _RANK[out.get(name)]:
            out[name] = status

    for name, (mentions, exclude, anchors, attributes) in _OBS_RE.items():
        obs = _OBS[name]
        excluded = _matches(exclude, clause)
        for s, e in _matches(mentions, clause):
            if any(s < xe and xs < e for xs, xe in excluded):
                continue
            put(name, _status([(s, e)], scopes, obs, cfg))
        for s, e in _matches(anchors, clause):
            if any(s < xe and xs < e for xs, xe in excluded):
                continue
            seg_s, seg_e = _segment_of(clause, s)
            attrs = [a for a in _matches(attributes, clause) if seg_s <= a[0] and a[1] <= seg_e]
            if attrs:
                put(name, _status([(s, e), *attrs], scopes, obs, cfg))
            else:  # a neutral mention: only a negation or uncertainty makes it a label
                status = _status([(s, e)], scopes, obs, cfg)
                if status != POSITIVE:
                    put(name, status)
    for rx, names in _IMPLIED_RE:
        if rx.search(clause):
            for name in names:
                put(name, NEGATIVE)


def label_observations(text: str, config: LabelerConfig | None = None) -> dict[str, str | None]:
    """Every internal observation (``OBSERVATIONS`` names) -> label, before mapping to label sets."""
    cfg = config or DEFAULT_CONFIG
    out: dict[str, str | None] = {o.name: None for o in OBSERVATIONS}
    for sentence in split_sentences(text.lower()):
        for clause in _clauses(sentence):
            _label_clause(clause, out, cfg)
    return out


def _merge(*labels: str | None) -> str | None:
    return max(labels, key=lambda v: _RANK[v])


def _abnormal(obs: dict[str, str | None], cfg: LabelerConfig) -> bool:
    # a healed granuloma is reported on normal studies; it counts only when counted as a nodule
    ignore = {"support_devices"} | (set() if cfg.granuloma_as_nodule else {"granuloma"})
    return any(v in (POSITIVE, UNCERTAIN) for k, v in obs.items() if k not in ignore)


def _synonym_merge(label: str, obs: dict[str, str | None], cfg: LabelerConfig) -> str | None:
    """``label``'s value: its observations in ``SYNONYMS`` that ``cfg`` switches on, aggregated."""
    on = [o for lab, o, switch in SYNONYMS if lab == label and (switch is None or getattr(cfg, switch))]
    return _merge(*(obs[o] for o in on))


def _apply_uncertain(out: dict[str, str | None], cfg: LabelerConfig) -> dict[str, str | None]:
    if cfg.uncertain == UNCERTAIN:
        return out
    return {k: (cfg.uncertain if v == UNCERTAIN else v) for k, v in out.items()}


def label_report(text: str, config: LabelerConfig | None = None) -> dict[str, str | None]:
    """Our label space (``REPORT_LABELS``) -> "positive" | "negative" | "uncertain" | None.

    ``config``: synonym switches and the uncertain policy (``LabelerConfig``; default CheXpert-like).
    """
    cfg = config or DEFAULT_CONFIG
    obs = label_observations(text, cfg)
    out = {name: obs[name] for name in FINDINGS if name in obs}
    for label in {lab for lab, _, _ in SYNONYMS}:
        out[label] = _synonym_merge(label, obs, cfg)
    for label, o in NEGATIVE_IMPLIES:
        if obs[o] == NEGATIVE:
            out[label] = _merge(out[label], NEGATIVE)
    out["tumour_malignant"] = obs["tumour_malignant"]
    out["normal"] = None if not text.strip() else (NEGATIVE if _abnormal(obs, cfg) else POSITIVE)
    return _apply_uncertain({k: out[k] for k in REPORT_LABELS}, cfg)


def label_report_chexpert(text: str, config: LabelerConfig | None = None) -> dict[str, str | None]:
    """The 14 CheXpert observations -> "positive" | "negative" | "uncertain" | None."""
    cfg = config or DEFAULT_CONFIG
    obs = label_observations(text, cfg)
    pathology = {k: v for k, v in obs.items() if k not in ("tumour_benign", "tumour_malignant")}
    out = {
        "Enlarged Cardiomediastinum": obs["enlarged_cardiomediastinum"],
        "Cardiomegaly": obs["cardiomegaly"],
        "Lung Opacity": _merge(obs["airspace_opacity"], obs["lung_opacity_other"]),
        "Lung Lesion": _synonym_merge("nodule", obs, cfg),
        "Edema": _synonym_merge("edema", obs, cfg),
        "Consolidation": obs["consolidation"],
        "Pneumonia": obs["pneumonia"],
        "Atelectasis": obs["atelectasis"],
        "Pneumothorax": obs["pneumothorax"],
        "Pleural Effusion": obs["pleural_effusion"],
        "Pleural Other": obs["pleural_other"],
        "Fracture": obs["fracture"],
        "Support Devices": obs["support_devices"],
    }
    out["No Finding"] = None if (_abnormal(pathology, cfg) or not text.strip()) else POSITIVE
    return _apply_uncertain({k: out[k] for k in CHEXPERT_OBSERVATIONS}, cfg)
