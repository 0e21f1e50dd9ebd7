"""The image loader's limits (module constants: one place to read and to change)."""

from __future__ import annotations

import threading

MAX_BYTES = 64 * 2**20  # largest file accepted, any format
MAX_PIXELS = 40_000_000  # largest single image / frame (rows x columns); Pillow's own limit is ~89 MP
MAX_DECODED_BYTES = 2**30  # DICOM: rows x cols x frames x samples x bytes the header may claim

#: warnings.catch_warnings swaps process-wide filters (Python < 3.14): the loader's two uses (Pillow bomb
#: warning -> error; pydicom warnings silenced) hold this lock so that neither leaks the other's filter.
WARNINGS_LOCK = threading.Lock()
