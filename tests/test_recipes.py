"""model/distill/recipes.py: the KD student's training set runs the teacher's trunk once per row and
gives exactly what separate passes gave (sequence-level KD decode, then the teacher cache)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_training import WORDS, tiny_model, tiny_tensorset

from model.distill.config import DistillConfig
from model.distill.data_plan import DataConfig
from model.distill.recipes import decode_transfer_reports, teacher_training_set
from model.distill.teacher_cache import cache_teacher_outputs
from model.distill.tensorset import TensorSet
from model.networks import build_tokenizer

torch.set_num_threads(1)

TEXTS = ["Small left pleural effusion. No pneumothorax.", "The heart is enlarged, ratio 0.58. Lungs are clear.",
         "A 14 mm benign nodule in the right upper zone.", "Normal study. No acute abnormality."]  # fmt: skip
N_LABELLED, N_TRANSFER = 5, 9  # odd sizes: the shared pass batches rows differently from separate passes


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_tokenizer([" ".join(WORDS[i:] + WORDS[:i]) + "." for i in range(len(WORDS))] + TEXTS)
    assert len(tokenizer) > 16 + len(WORDS)  # tiny_tensorset's word ids fit the vocabulary
    teacher, _ = tiny_model("tiny-teacher", len(tokenizer), seed=0, spread=True)
    teacher.eval()
    labelled = tiny_tensorset(N_LABELLED, seed=0)
    transfer = tiny_tensorset(N_TRANSFER, seed=1).strip_labels()
    data = DataConfig(data_dir="unused", max_len=labelled.ids.shape[-1])
    return teacher, tokenizer, labelled, transfer, data, DistillConfig(top_k=4, hint_size=2)


def _copy(s: TensorSet) -> TensorSet:
    return s.subset(torch.arange(len(s)))


def _separate_passes(teacher, tokenizer, labelled, transfer, data, dcfg) -> TensorSet:
    """What distill_student did before the shared pass: decode the transfer set, then cache the teacher."""
    transfer = _copy(transfer)
    decode_transfer_reports(teacher, tokenizer, transfer, data, show_progress=False)
    train = TensorSet.concat([labelled, transfer])
    return cache_teacher_outputs(teacher, train, dcfg, show_progress=False)


class _RowCounter:
    """Rows through ``module`` (a forward hook), released on exit. Hooked on ``encoder.trunk``: the
    encoder's entry point (``forward_features``) calls the trunk module, not its own ``__call__``."""

    def __init__(self, module):
        self.module, self.rows = module, 0

    def __enter__(self):
        self.handle = self.module.register_forward_hook(lambda m, args, out: self._add(out))
        return self

    def _add(self, out):
        self.rows += out.shape[0]

    def __exit__(self, *exc):
        self.handle.remove()


def test_shared_trunk_pass_gives_the_same_reports_and_teacher_targets(setup):
    teacher, tokenizer, labelled, transfer, data, dcfg = setup
    with _RowCounter(teacher.encoder.trunk) as separate:
        ref = _separate_passes(teacher, tokenizer, labelled, transfer, data, dcfg)
    with _RowCounter(teacher.encoder.trunk) as shared_rows:
        shared = teacher_training_set(
            teacher, tokenizer, labelled, _copy(transfer), data, dcfg, show_progress=False
        )
    assert separate.rows == N_TRANSFER + N_LABELLED + N_TRANSFER  # the old way: transfer rows twice
    assert shared_rows.rows == N_LABELLED + N_TRANSFER  # the trunk once per row

    # the decode did something (the teacher's reports replaced the transfer set's), identically
    assert not torch.equal(ref.ids[N_LABELLED:], transfer.ids)
    assert len({tuple(r.tolist()) for r in ref.ids[N_LABELLED:, 0]}) > 1  # reports vary with the image
    for name in ("ids", "prompt_len", "seq_len", "has_report"):
        assert torch.equal(getattr(shared, name), getattr(ref, name)), name
    assert shared.detail_mode == ref.detail_mode == "fixed"

    for f in dataclasses.fields(ref.teacher):
        a, b = getattr(shared.teacher, f.name), getattr(ref.teacher, f.name)
        if a is None or b is None:
            assert a is b, f.name
        elif a.is_floating_point():  # float32 features: equal up to the conv's batch-size rounding
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f.name)
        else:
            assert torch.equal(a, b), f.name


def test_student_set_never_carries_the_teachers_features(setup):
    teacher, tokenizer, labelled, transfer, data, dcfg = setup
    train = teacher_training_set(
        teacher, tokenizer, labelled, _copy(transfer), data, dcfg, show_progress=False
    )
    assert train.features is None  # TensorSet.features = a model's OWN trunk output
    assert "features" not in train.batch(torch.arange(len(train)))
    assert train.teacher is not None and len(train) == N_LABELLED + N_TRANSFER
    assert labelled.features is None and labelled.teacher is None  # the inputs are not written to


def test_labelled_only_without_sequence_kd(setup):
    teacher, tokenizer, labelled, _, data, dcfg = setup
    with _RowCounter(teacher.encoder.trunk) as rows:
        train = teacher_training_set(
            teacher, tokenizer, _copy(labelled), None, data, dataclasses.replace(dcfg, sequence_kd=False),
            show_progress=False,
        )  # fmt: skip
    ref = cache_teacher_outputs(teacher, _copy(labelled), dcfg, show_progress=False)
    assert rows.rows == N_LABELLED and train.features is None
    torch.testing.assert_close(train.teacher.findings_logits, ref.teacher.findings_logits, rtol=0, atol=1e-5)
