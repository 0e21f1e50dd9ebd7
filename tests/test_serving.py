"""The inference queue (thread policy): results identical to isolated runs, FIFO, bounded torch threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from model.serving import POLICIES, InferenceQueue, ThreadPolicy, shared_queue
from model.types import ReportStyle, Study


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    from model.demo import build_demo_checkpoints
    from model.inference import Predictor

    dirs = build_demo_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return {m: Predictor.from_dir(d, m) for m, d in dirs.items()}


def _study(seed: int, modality: str = "CXR") -> Study:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    px = (
        0.3
        + 0.4 * np.exp(-(((xx - 40 - seed) / 20) ** 2 + ((yy - 50) / 25) ** 2))
        + 0.1 * rng.random((96, 96))
    )
    return Study(pixels=np.clip(px, 0, 1).astype(np.float32), modality=modality, source=f"s{seed}")


def _same(a, b) -> bool:
    return (a.tokens, a.findings, a.tumour, a.token_probs, a.ood_score) == (
        b.tokens,
        b.findings,
        b.tumour,
        b.token_probs,
        b.ood_score,
    ) or (np.isnan(a.ood_score) and (a.tokens, a.findings, a.tumour) == (b.tokens, b.findings, b.tumour))


@pytest.mark.parametrize("policy", ["queue-cores-adaptive", "queue-1x1", "queue-1xall", "inline-1"])
def test_concurrent_sessions_match_isolated_runs(predictors, policy):
    """8 'sessions' (threads) each predicting and explaining on their own study through one queue get
    exactly what a lone call gets (no cross-talk between jobs, whatever the thread count per job)."""
    from model.explain.gradcam import explain

    studies = [_study(i, "CXR" if i % 2 else "CT") for i in range(8)]
    style = ReportStyle(max_new_tokens=12)
    expected = {
        (i, m): (p.predict(s, style=style), explain(p, s, "finding:pleural_effusion").heatmap)
        for i, s in enumerate(studies)
        for m, p in predictors.items()
    }
    q = InferenceQueue(policy, cores=2)
    got: dict = {}
    errors: list = []

    def session(i):
        try:
            for m, p in predictors.items():
                pred = q.run(p.predict, studies[i], style=style)
                heat = q.run(explain, p, studies[i], "finding:pleural_effusion").heatmap
                got[(i, m)] = (pred, heat)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(studies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    q.close()
    assert not errors
    assert set(got) == set(expected)
    for k, (pred, heat) in expected.items():
        assert _same(got[k][0], pred), k
        np.testing.assert_allclose(got[k][1], heat, atol=1e-5)


def test_exceptions_reach_the_caller_and_the_queue_keeps_serving():
    q = InferenceQueue(ThreadPolicy(workers=1, torch_threads=1))

    def boom():
        raise ValueError("bad study")

    with pytest.raises(ValueError, match="bad study"):
        q.run(boom)
    assert q.run(lambda: 41 + 1) == 42
    q.close()


def test_one_worker_serialises_jobs_in_arrival_order():
    q = InferenceQueue(ThreadPolicy(workers=1, torch_threads=1))
    running, peak, order = [0], [0], []
    lock = threading.Lock()

    def job(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
            order.append(i)
        return i

    futures = [q.submit(job, i) for i in range(12)]
    assert [f.result(30) for f in futures] == list(range(12))
    assert peak[0] == 1 and order == list(range(12))
    assert q.pending() == 0
    q.close()


def test_torch_threads_follow_the_policy(monkeypatch):
    """Fixed policies give each job their count; adaptive gives a lone job every core on an idle machine
    (one on a loaded one) and a job that starts while another runs one core."""
    import model.serving

    monkeypatch.setattr(model.serving, "_load_average", lambda: 0.0)  # an idle machine
    started, release = threading.Event(), threading.Event()

    def threads_now(hold=False):
        n = torch.get_num_threads()
        if hold:
            started.set()
            release.wait(10)
        return n

    q = InferenceQueue(ThreadPolicy(workers=1, torch_threads=1), cores=2)
    assert q.run(threads_now) == 1
    q.close()
    adaptive = InferenceQueue(ThreadPolicy(workers=-1, torch_threads=0), cores=2)
    assert adaptive.n_workers == 2
    first = adaptive.submit(threads_now, True)
    assert started.wait(10)
    second = adaptive.run(threads_now)  # runs on the other worker while the first is busy
    release.set()
    assert (first.result(10), second) == (2, 1)
    monkeypatch.setattr(model.serving, "_load_average", lambda: 5.0)  # others hold both cores
    assert adaptive.run(threads_now) == 1
    adaptive.close()


def test_nested_run_inside_a_job_does_not_deadlock():
    q = InferenceQueue(ThreadPolicy(workers=1, torch_threads=1))
    assert q.run(lambda: q.run(lambda: "inner")) == "inner"
    q.close()


def test_shared_queue_is_one_per_process_and_named_policies_exist():
    assert shared_queue() is shared_queue()
    assert "queue-cores-adaptive" in POLICIES and "inline" in POLICIES


def _held_queue() -> tuple[InferenceQueue, threading.Event]:
    """A one-worker queue whose worker is busy until the returned event is set: jobs queue up behind it."""
    q = InferenceQueue(ThreadPolicy(workers=1, torch_threads=1))
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)

    q.submit(hold)
    assert started.wait(10)
    return q, release


def test_urgent_jobs_overtake_deferred_ones():
    """Reports and overlays (urgent) of every session come before anyone's highlights (deferred)."""
    from model.serving import DEFERRED, URGENT

    q, release = _held_queue()
    order = []
    futures = [
        q.submit_at(DEFERRED, order.append, "highlight-a"),
        q.submit_at(URGENT, order.append, "report-b"),
        q.submit_at(DEFERRED, order.append, "highlight-c"),
        q.submit_at(URGENT, order.append, "report-d"),
    ]
    release.set()
    for f in futures:
        f.result(10)
    assert order == ["report-b", "report-d", "highlight-a", "highlight-c"]
    assert q.run_deferred(lambda: "done") == "done"
    q.close()


def test_a_requests_later_job_goes_before_requests_that_arrived_after_it():
    """Session A's student (submitted after its teacher) runs before session B's and C's teachers, which
    arrived after A's request: each session's page completes in turn instead of all at the end."""
    from model.serving import new_request

    q, release = _held_queue()
    order = []
    submitted = {name: threading.Event() for name in "ABC"}
    go_on, futures = threading.Event(), []

    def session(name: str, second: bool):  # one page run: its thread, its request
        new_request()
        futures.append(q.submit(order.append, f"{name}-teacher"))
        submitted[name].set()
        if second:
            go_on.wait(10)
            futures.append(q.submit(order.append, f"{name}-student"))

    threads = []
    for name in "ABC":
        threads.append(threading.Thread(target=session, args=(name, name == "A")))
        threads[-1].start()
        assert submitted[name].wait(10)
    go_on.set()  # A's second call arrives after B's and C's first ones
    threads[0].join(10)
    release.set()
    for f in futures:
        f.result(10)
    assert order == ["A-teacher", "A-student", "B-teacher", "C-teacher"]
    q.close()
