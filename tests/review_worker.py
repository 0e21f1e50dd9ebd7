"""A writer process for the store's durability and concurrency tests (run by tests/test_review_store.py).

python tests/review_worker.py saves URL DATA_DIR WORKER N GO_FILE
    wait for GO_FILE, save N distinct reviews (seeds WORKER*1000 + i), then save again the first 5
    reviews of worker 0 (already stored or being stored: must not duplicate); print each id.
python tests/review_worker.py killable URL DATA_DIR PAUSE_AT
    save reviews forever, printing "saved ID" after each; on save number PAUSE_AT print
    "committing" between the INSERT and the COMMIT and sleep there (the test SIGKILLs it then).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_builders import make_pixels, make_review  # noqa: E402
from sqlalchemy import event  # noqa: E402

from model.review import ReviewStore  # noqa: E402


def saves(url: str, data_dir: str, worker: int, n: int, go_file: str) -> None:
    store = ReviewStore.open(url, data_dir=Path(data_dir), timeout_s=60)
    while not Path(go_file).exists():
        time.sleep(0.01)
    for i in range(n):
        px = make_pixels(worker * 1000 + i)
        print(store.save_review(make_review(px, text=f"Review {worker}-{i}."), px), flush=True)
    for i in range(5):  # the same reviews as worker 0's first five
        px = make_pixels(i)
        print(store.save_review(make_review(px, text=f"Review 0-{i}."), px), flush=True)
    store.close()


def killable(url: str, data_dir: str, pause_at: int) -> None:
    store = ReviewStore.open(url, data_dir=Path(data_dir), timeout_s=60)
    count = {"n": 0}

    @event.listens_for(store.engine, "commit")
    def _slow_commit(conn) -> None:  # runs just before the driver's COMMIT
        if count["n"] == pause_at:
            print("committing", flush=True)
            time.sleep(30)

    i = 0
    while True:
        count["n"] = i
        px = make_pixels(50_000 + i)
        rid = store.save_review(make_review(px, text=f"Durable {i}."), px)
        print(f"saved {rid}", flush=True)
        i += 1


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "saves":
        saves(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
    elif mode == "killable":
        killable(rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
