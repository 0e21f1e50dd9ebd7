"""One inference queue shared by every caller in a process (all Streamlit sessions): the thread policy.

Why: torch gives each calling thread one OpenMP team of ``cores`` threads. Eight sessions predicting at
once on a 2-core machine then run 16 spinning threads, and a core taken by another process stalls
every barrier (a user test measured 4.4 s per teacher study instead of 0.2 s). Here model work goes
through a small pool of inference threads that take jobs from one FIFO queue, so the number of busy
torch threads never exceeds what the policy allows, and sessions are served in arrival order.

A policy is ``workers`` inference threads, each job running with ``torch_threads`` intra-op threads
(0 = adaptive: ``cores // busy workers``, so a lone job on an idle machine gets every core, while
concurrent jobs, or any job while the load average shows other processes on the cores, get one). ``benchmarks/bench_threads.py`` measures the policies in ``POLICIES`` against calling torch
directly from each session's thread; ``DEFAULT_POLICY`` is the one that measured best.

``InferenceQueue.run`` from inside a job runs inline (no deadlock when a job calls another model
function that also goes through the queue).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
POLICY_ENV = "MEDDISTILL_INFERENCE"  # names a POLICIES entry; unset = DEFAULT_POLICY


@dataclass(frozen=True)
class ThreadPolicy:
    """How model calls share the CPU."""

    workers: int = 1  # inference threads taking jobs from the shared queue (0 = no queue: run inline)
    torch_threads: int = 0  # intra-op threads per job; 0 = adaptive (cores // busy workers, at least 1;
    # 1 while the load average says other processes already fill the cores)


POLICIES: dict[str, ThreadPolicy] = {
    "inline": ThreadPolicy(workers=0, torch_threads=0),  # no queue; each caller uses torch's default
    "inline-1": ThreadPolicy(workers=0, torch_threads=1),  # no queue; one torch thread per call
    "queue-1x1": ThreadPolicy(workers=1, torch_threads=1),  # one worker, one torch thread
    "queue-1xall": ThreadPolicy(workers=1, torch_threads=0),  # one worker, every core
    "queue-cores-x1": ThreadPolicy(workers=-1, torch_threads=1),  # a worker per core, one thread each
    "queue-cores-adaptive": ThreadPolicy(workers=-1, torch_threads=0),  # a worker per core, adaptive
}
# benchmarks/results/threads.json (8 sessions on 2 busy cores): one worker with one torch thread had the
# lowest time to every session's reports + overlays and the lowest CPU per session; it also leaves a core
# to Streamlit and the browsers. A lone study then takes its model time at one thread (~0.6 s).
DEFAULT_POLICY = "queue-1x1"


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    future: Future


URGENT, DEFERRED = 0, 1  # job priorities: what a page shows first / extras that may wait (highlights)

_request = threading.local()  # .ticket: the page run this thread is serving (see new_request)
_tickets = itertools.count()


def new_request() -> None:
    """Start a new request on this thread (``app.py`` calls it at the top of every page run): until the
    next call, the jobs this thread submits carry one ticket, and within a priority the queue serves
    tickets in arrival order. So a session's second model call (the student, after the teacher) goes
    before sessions that arrived later instead of behind all of their first calls: under 8 concurrent
    uploads the first session's page is complete after its own two predictions, and each browser can
    draw its page while the server works on the next (plain FIFO finished every session together, at
    the end). Jobs submitted outside a request get a ticket each (FIFO, as before)."""
    _request.ticket = next(_tickets)


class InferenceQueue:
    """Model calls served by ``policy.workers`` daemon threads (started lazily): in request order
    (``new_request``; first in, first out within a request) within a priority, ``URGENT`` jobs (reports, overlays) before ``DEFERRED`` ones (word highlights),
    so that under load every session's main answer arrives before anyone's extras are computed."""

    def __init__(self, policy: ThreadPolicy | str = DEFAULT_POLICY, cores: int | None = None):
        self.policy = POLICIES[policy] if isinstance(policy, str) else policy
        self.cores = cores or cpu_cores()
        n = self.policy.workers
        self.n_workers = self.cores if n < 0 else n
        self._jobs: queue.PriorityQueue[tuple[float, int, int, _Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()  # FIFO order within a priority and request
        self._local = threading.local()  # .inside = True on worker threads
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._busy = 0  # jobs running now
        self._waiting = 0  # jobs queued, not started

    # -- callers ------------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` (``URGENT``); the future holds its result or its exception."""
        return self.submit_at(URGENT, fn, *args, **kwargs)

    def submit_at(self, priority: int, fn: Callable[..., T], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` at ``priority`` (lower runs first)."""
        future: Future = Future()
        if self.n_workers == 0 or getattr(self._local, "inside", False):
            self._run_job(_Job(fn, args, kwargs, future), queued=False)
            return future
        self._start()
        with self._lock:
            self._waiting += 1
        ticket = getattr(_request, "ticket", None)
        ticket = next(_tickets) if ticket is None else ticket
        self._jobs.put((priority, ticket, next(self._seq), _Job(fn, args, kwargs, future)))
        return future

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` on an inference thread; blocks; re-raises its exception here."""
        return self.submit(fn, *args, **kwargs).result()

    def run_deferred(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Like ``run``, behind every ``URGENT`` job already queued (extras a page shows last)."""
        return self.submit_at(DEFERRED, fn, *args, **kwargs).result()

    def pending(self) -> int:
        """Jobs queued or running now (what a new job waits behind, roughly)."""
        with self._lock:
            return self._waiting + self._busy

    def close(self) -> None:
        """Stop the workers after the jobs already queued (tests; the app's queue lives with the process)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put((float("inf"), 0, next(self._seq), None))
        for t in threads:
            t.join(timeout=30)

    # -- workers ------------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.n_workers:
                t = threading.Thread(target=self._serve, name=f"inference-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def _serve(self) -> None:
        self._local.inside = True
        while (job := self._jobs.get()[-1]) is not None:
            self._run_job(job, queued=True)

    def _threads_for_job(self, busy: int) -> int:
        if self.policy.torch_threads > 0:
            return self.policy.torch_threads
        if self.n_workers == 0:
            return 0  # inline + adaptive: leave torch's default alone
        if busy == 1 and _load_average() >= self.cores:
            # other processes hold the cores: a 2-thread OpenMP team would wait at every barrier for
            # a descheduled member (measured 20x slower under load), one thread never waits
            return 1
        return max(1, self.cores // max(1, busy))

    def _run_job(self, job: _Job, queued: bool) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        with self._lock:
            if queued:
                self._waiting -= 1
            self._busy += 1
            busy = self._busy
        try:
            n = self._threads_for_job(busy)
            if n and getattr(self._local, "threads", 0) != n:
                # torch's own count is process-wide, but OpenMP's team size is per calling thread:
                # remember what this thread was given rather than asking torch
                import torch  # here, not at module import: pages import this module before any model loads

                torch.set_num_threads(n)
                self._local.threads = n
            job.future.set_result(job.fn(*job.args, **job.kwargs))
        except BaseException as err:  # handed to the caller, who re-raises it
            job.future.set_exception(err)
        finally:
            with self._lock:
                self._busy -= 1


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Decoding a large image allocates and frees hundreds of MB in pieces below glibc's mmap threshold;
    without a trim they stay in the process (8 concurrent 9-MP loads: +470 MB RSS while 96 MB were
    live; through the queue and trimmed: +86 MB).
    """
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None


def _load_average() -> float:
    """1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


_shared: InferenceQueue | None = None
_shared_lock = threading.Lock()
TRIM_EVERY_S = 60.0  # s: how often the serving process hands freed heap back to the OS


def _trim_forever(period_s: float) -> None:
    # A closed session that expires (its uploads, images, widget state) sits in reference cycles that
    # only a full collection frees, and what Python frees malloc keeps: a collection and a trim a
    # minute return it (a pause of a few hundred ms at most, once a minute).
    import gc

    while True:
        time.sleep(period_s)
        gc.collect()
        release_memory()


def shared_queue() -> InferenceQueue:
    """The process-wide queue (policy from ``$MEDDISTILL_INFERENCE``, else ``DEFAULT_POLICY``); its
    first use also starts a daemon thread that trims the heap every ``TRIM_EVERY_S``."""
    global _shared
    with _shared_lock:
        if _shared is None:
            name = os.environ.get(POLICY_ENV) or DEFAULT_POLICY
            _shared = InferenceQueue(POLICIES.get(name, POLICIES[DEFAULT_POLICY]))
            threading.Thread(
                target=_trim_forever, args=(TRIM_EVERY_S,), name="malloc-trim", daemon=True
            ).start()
        return _shared


#: what a page needs before its first model call, third-party only (about 3 CPU-s of imports here): our
#: own modules are left to the page, so the two threads never import one package set in two orders
#: (Python accepts a half-initialised module when two threads' imports wait on each other)
PREWARM_MODULES = (
    "torch",  # (transformers is no longer imported at run time: the GPT-2 is in house, issue 13)
    "safetensors.torch",
)
_prewarm_started = False
_prewarm_done = threading.Event()


def start_prewarm(modules: tuple[str, ...] = PREWARM_MODULES) -> bool:
    """Import the model stack on a daemon thread, once per process; True when this call started it.

    ``app.py`` calls it after drawing the navigation and the disclaimer, so the first paint never
    waits for torch, and the imports have started before the page asks for a model; ``wait_prewarm``
    lets the model loader wait for them instead of importing the same packages at the same time.
    """
    global _prewarm_started
    with _shared_lock:
        if _prewarm_started:
            return False
        _prewarm_started = True

    def _import_all() -> None:
        import importlib

        try:
            for name in modules:
                importlib.import_module(name)
        except Exception:  # best effort: the page's own import reports a real problem
            pass
        finally:
            _prewarm_done.set()

    threading.Thread(target=_import_all, name="prewarm-imports", daemon=True).start()
    return True


def wait_prewarm(timeout: float = 120.0) -> None:
    """Block until a started pre-warm has finished (at most ``timeout`` s); returns at once otherwise."""
    if _prewarm_started:
        _prewarm_done.wait(timeout)
