"""Where a benchmark's figures go: ``NAME.json`` (the whole result) beside ``NAME.md`` (its table), the table
printed too. Imported by the benchmark scripts (run as ``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def write_result(out: str | Path, result: dict, to_markdown: Callable[[dict], str], indent: int = 1) -> Path:
    """Write ``result`` to ``out`` (JSON) and ``to_markdown(result)`` to ``out`` with a .md suffix; print
    the markdown; return ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=indent) + "\n")
    text = to_markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    return out


def f3(x) -> str:
    """A table cell: three decimals, "-" for a missing value."""
    return "-" if x is None else f"{x:.3f}"
