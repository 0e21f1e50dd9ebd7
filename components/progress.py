"""A progress box with steps that appears only when work is slow (first load, beam search, Grad-CAM).

Like ``st.spinner``, the box is drawn by a timer thread after ``delay`` seconds, so fast cache hits
show nothing; unlike it, it lists the steps done and under way (with how long each took), and it
disappears when the work is done (the results are the page's own answer).
"""

from __future__ import annotations

import threading
import time

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx

SHOW_AFTER_S = 0.5  # s: below this a box would only flicker


class StepProgress:
    """``with StepProgress("Writing reports…") as p: p.step("Teacher: greedy report"); ...``"""

    def __init__(self, label: str, delay: float = SHOW_AFTER_S):
        self.label = label
        self._slot = st.empty()
        self._box = None
        self._steps: list[tuple[str, float]] = []  # (text, start time)
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(delay, self._show)
        add_script_run_ctx(self._timer)

    def __enter__(self) -> StepProgress:
        self._timer.start()
        return self

    def step(self, text: str) -> None:
        """Start a new step (the previous one is then done)."""
        with self._lock:
            self._close_last()
            self._steps.append((text, time.perf_counter()))
            if self._box is not None:
                self._box.write(f"{text}…")

    def _close_last(self) -> None:
        if self._steps and self._box is not None:
            text, t0 = self._steps[-1]
            self._box.write(f"✓ {text} ({time.perf_counter() - t0:.1f} s)")

    def _show(self) -> None:
        with self._lock:
            if self._done:
                return
            self._box = self._slot.status(self.label, expanded=True)
            now = time.perf_counter()
            for i, (text, t0) in enumerate(self._steps):
                last = i == len(self._steps) - 1
                t1 = now if last else self._steps[i + 1][1]
                self._box.write(f"{text}…" if last else f"✓ {text} ({t1 - t0:.1f} s)")

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._box is not None:
                self._slot.empty()
