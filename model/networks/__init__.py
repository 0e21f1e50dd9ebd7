"""Networks: image encoders, task heads, GPT-2 report decoder, the word-level tokenizer.

Public API (see docs/interfaces.md "Networks")::

    ModelConfig, TEACHER_PRESETS, STUDENT_PRESETS, TINY_PRESETS, ALL_PRESETS
    ReportModel, ModelOutput, HeadOutput, build_model, count_parameters, init_weights
    build_tokenizer, encode_report, decode_ids, detokenize, generate_texts
"""

from model.networks.config import ALL_PRESETS, STUDENT_PRESETS, TEACHER_PRESETS, TINY_PRESETS, ModelConfig
from model.networks.encoders import init_weights
from model.networks.heads import HeadOutput
from model.networks.multitask import (
    ModelOutput,
    ReportModel,
    build_model,
    count_parameters,
    generate_ids,
    generate_texts,
)
from model.networks.tokenizer import (
    EOS_ID,
    PAD_ID,
    PROMPT_LEN,
    SPECIAL_TOKENS,
    build_tokenizer,
    decode_ids,
    detokenize,
    encode_report,
    encode_words,
    prompt_ids,
)

__all__ = [
    "ALL_PRESETS",
    "EOS_ID",
    "PAD_ID",
    "PROMPT_LEN",
    "SPECIAL_TOKENS",
    "STUDENT_PRESETS",
    "TEACHER_PRESETS",
    "TINY_PRESETS",
    "HeadOutput",
    "ModelConfig",
    "ModelOutput",
    "ReportModel",
    "build_model",
    "build_tokenizer",
    "count_parameters",
    "decode_ids",
    "detokenize",
    "encode_report",
    "encode_words",
    "generate_ids",
    "generate_texts",
    "init_weights",
    "prompt_ids",
]
