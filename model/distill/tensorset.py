"""A training split materialised once as tensors: images, masked targets, tokenised reports, and
(optionally) the teacher's cached outputs.

Why: on a 2-core CPU, decoding PNGs and tokenising every epoch costs as much as the small
student's forward pass. With augmentation off this is exact, and it makes the teacher cache a
few extra columns of the same table. Each item keeps its report tokenised at every detail level;
which level a step sees is drawn per epoch from the run seed (the same on every DDP replica), or
fixed per item when teacher token distributions are cached (they belong to one sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

from model.distill.losses import TeacherTargets
from model.types import DETAIL_LEVELS, IGNORE_INDEX, LESION_CHANNELS, LESION_GRID


@dataclass
class TensorSet:
    """Row i of every tensor is item i. ``ids`` hold each item's report at every detail level."""

    images: Tensor  # (N, 1, S, S) uint8 (the dataset's images are 8-bit: exact)
    context: Tensor  # (N, CONTEXT_DIM) float32
    findings: Tensor  # (N, n_findings) float32, NaN = unknown
    tumour: Tensor  # (N,) long, -100 = unknown
    subtype: Tensor  # (N,) long, -100 = unknown
    treatments: Tensor  # (N, n_treatments) float32, NaN = unknown
    is_ct: Tensor  # (N,) bool
    ids: Tensor  # (N, D, L) long token ids, pad-filled
    prompt_len: Tensor  # (N, D) long: leading control tokens that are input, never targets
    seq_len: Tensor  # (N, D) long: real tokens (prompt + report + eos); 0 report tokens = no report
    has_report: Tensor  # (N,) bool
    fixed_detail: Tensor  # (N,) long: the level used when ``detail_mode == "fixed"``
    sample_ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    pad_id: int = 0
    detail_mode: str = "random"  # "random" (drawn per epoch) | "fixed"
    teacher: TeacherTargets | None = None  # (N, ...) rows, from model.distill.teacher_cache; None = no KD
    features: Tensor | None = None  # (N, C, h, w) float16: the model's own trunk output, cached for the
    # frozen-trunk stage (model.distill.feature_stage); batches then carry "features" and the trunk is skipped
    lesion: Tensor | None = None  # (N, len(LESION_CHANNELS), LESION_GRID, LESION_GRID) bool: where each lesion is
    lesion_known: Tensor | None = None  # (N,) bool: the row has masks (phantoms); the lesion loss reads only these

    def __len__(self) -> int:
        return self.images.shape[0]

    # ------------------------------------------------------------------------------------------
    def detail_for_epoch(self, epoch: int, seed: int) -> Tensor:
        """(N,) detail index per item for this epoch: random but the same on every replica."""
        if self.detail_mode == "fixed":
            return self.fixed_detail
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randint(0, self.ids.shape[1], (len(self),), generator=g)

    def batch(self, index: Tensor, detail: Tensor | None = None) -> dict[str, Tensor]:
        """The rows ``index`` as a batch dict for the model and ``distillation_loss``."""
        index = torch.as_tensor(index, dtype=torch.long)
        d = (self.fixed_detail if detail is None else detail)[index]  # (B,)
        ids = self.ids[index, d]  # (B, L)
        seq_len = self.seq_len[index, d]  # (B,)
        prompt = self.prompt_len[index, d]  # (B,)
        L = max(1, int(seq_len.max()))  # trim padding shared by the whole batch (decoder cost ~ L)
        ids = ids[:, :L]
        pos = torch.arange(L)[None, :]  # (1, L)
        attn = pos < seq_len[:, None]  # (B, L)
        scored = attn & (pos >= prompt[:, None]) & self.has_report[index, None]  # (B, L)
        labels = torch.where(scored, ids, torch.full_like(ids, IGNORE_INDEX))
        findings = self.findings[index]
        treatments = self.treatments[index]
        is_ct = self.is_ct[index]
        out = {
            "images": self.images[index].float() / 255.0,
            "context": self.context[index],
            "input_ids": ids,
            "attention_mask": attn.long(),
            "labels": labels,
            "token_mask": scored,
            "findings": findings,
            "findings_mask": ~torch.isnan(findings),
            "tumour": self.tumour[index],
            "subtype": self.subtype[index],
            "treatments": treatments,
            "treatments_mask": ~torch.isnan(treatments),
            "is_ct": is_ct,
            "is_cxr": ~is_ct,
            "detail": d,
        }
        if self.teacher is not None:
            out["teacher"] = self.teacher.rows(index, length=L)  # TeacherTargets for the batch
        if self.features is not None:
            out["features"] = self.features[index].float()
        if self.lesion is not None:
            out["lesion"] = self.lesion[index]
            out["lesion_known"] = self.lesion_known[index]
        return out

    def repeat_sources(self, repeats: dict[str, int] | Sequence[tuple[str, int]]) -> TensorSet:
        """This set with the rows of each named source repeated ``k`` times (k <= 1: once); self when none is."""
        repeats = dict(repeats)
        extra = [i for i, s in enumerate(self.sources) for _ in range(int(repeats.get(s, 1)) - 1)]
        return TensorSet.concat([self, self.subset(extra)]) if extra else self

    def subset(self, index: Sequence[int] | Tensor) -> TensorSet:
        """Rows ``index`` as a new TensorSet (shares nothing mutable with this one)."""
        index = torch.as_tensor(index, dtype=torch.long)
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                kw[f.name] = v[index].clone()
            elif f.name in ("sample_ids", "sources"):
                kw[f.name] = [v[i] for i in index.tolist()]
            elif f.name == "teacher":
                kw[f.name] = v.rows(index, as_float=False) if v is not None else None
            else:
                kw[f.name] = v
        return TensorSet(**kw)

    @staticmethod
    def concat(parts: Sequence[TensorSet]) -> TensorSet:
        """Stack several sets (same image size and sequence length); teacher columns must match."""
        kw = {}
        first = parts[0]
        if any(p.lesion is not None for p in parts) and any(p.lesion is None for p in parts):
            parts = [p.with_lesion_placeholder() for p in parts]  # e.g. reviewed cases + phantom replay
        for f in fields(first):
            v = getattr(first, f.name)
            if isinstance(v, Tensor):
                kw[f.name] = torch.cat([getattr(p, f.name) for p in parts])
            elif f.name in ("sample_ids", "sources"):
                kw[f.name] = [x for p in parts for x in getattr(p, f.name)]
            elif f.name == "teacher":
                kw[f.name] = TeacherTargets.concat([p.teacher for p in parts]) if v is not None else None
            else:
                kw[f.name] = v
        return TensorSet(**kw)

    def with_lesion_placeholder(self) -> TensorSet:
        """Self, or a shallow copy with all-unknown lesion masks where it has none (so sets concatenate)."""
        if self.lesion is not None:
            return self
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["lesion"] = torch.zeros((len(self), len(LESION_CHANNELS), LESION_GRID, LESION_GRID), dtype=torch.bool)
        kw["lesion_known"] = torch.zeros(len(self), dtype=torch.bool)
        return TensorSet(**kw)

    def strip_labels(self) -> TensorSet:
        """A copy with every ground-truth label unknown (a transfer set: only the teacher labels it)."""
        out = self.subset(torch.arange(len(self)))
        out.findings.fill_(float("nan"))
        out.treatments.fill_(float("nan"))
        out.tumour.fill_(IGNORE_INDEX)
        out.subtype.fill_(IGNORE_INDEX)
        out.has_report.fill_(False)
        if out.lesion_known is not None:
            out.lesion_known.fill_(False)
        return out


# ----------------------------------------------------------------------------------------------
# Building from a dataset


def build_tensorset(
    items: Sequence[dict],
    reports: Sequence[dict[str, str] | None],
    encode: Callable[[str | None, str, str], tuple[list[int], int]],
    max_len: int,
    pad_id: int,
    seed: int = 0,
) -> TensorSet:
    """Materialise dataset items (``ReportDataset.__getitem__`` dicts) as a TensorSet.

    ``reports[i]`` maps detail level -> text (None: the item has no report). ``encode(text, detail,
    modality)`` returns (token ids incl. control tokens and eos, number of leading prompt tokens);
    ``text`` None gives the prompt alone.
    """
    n, levels = len(items), len(DETAIL_LEVELS)
    ids = torch.full((n, levels, max_len), pad_id, dtype=torch.long)
    prompt_len = torch.zeros((n, levels), dtype=torch.long)
    seq_len = torch.zeros((n, levels), dtype=torch.long)
    has_report = torch.zeros(n, dtype=torch.bool)
    for i, (item, rep) in enumerate(zip(items, reports, strict=True)):
        for j, level in enumerate(DETAIL_LEVELS):
            text = (rep or {}).get(level) or (rep or {}).get("standard")
            toks, plen = encode(text, level, item["modality"])
            toks = toks[:max_len]
            ids[i, j, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            prompt_len[i, j] = min(plen, max_len)
            seq_len[i, j] = len(toks)
        has_report[i] = bool(rep) and bool(seq_len[i].min() > prompt_len[i].max())

    def stack(key, dtype=None):
        return torch.stack([torch.as_tensor(np.asarray(it[key])) for it in items]).to(dtype)

    rng = np.random.default_rng(seed)
    lesion = lesion_known = None
    if any("lesion" in it for it in items):  # (K, G, G) bool where known (phantom masks); zeros elsewhere
        empty = torch.zeros((len(LESION_CHANNELS), LESION_GRID, LESION_GRID), dtype=torch.bool)
        lesion = torch.stack([torch.as_tensor(it["lesion"]) if "lesion" in it else empty for it in items])
        lesion_known = torch.tensor(["lesion" in it for it in items], dtype=torch.bool)
    return TensorSet(
        images=(stack("image", torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8),
        context=stack("context", torch.float32),
        findings=stack("findings", torch.float32),
        tumour=stack("tumour", torch.long),
        subtype=stack("subtype", torch.long),
        treatments=stack("treatments", torch.float32),
        is_ct=torch.tensor([it["modality"] == "CT" for it in items], dtype=torch.bool),
        ids=ids,
        prompt_len=prompt_len,
        seq_len=seq_len,
        has_report=has_report,
        fixed_detail=torch.as_tensor(rng.integers(0, levels, size=n), dtype=torch.long),
        sample_ids=[str(it["id"]) for it in items],
        sources=[str(it.get("source", "")) for it in items],
        pad_id=pad_id,
        lesion=lesion,
        lesion_known=lesion_known,
    )
