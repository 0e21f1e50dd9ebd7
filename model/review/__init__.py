"""Expert reviews and the model registry (issue 14): types, the store, the pixel content address.

from model.review import ReviewStore, Review, FindingReview, pixel_sha256, now_iso
store = ReviewStore.open()                       # $MEDDISTILL_DB_URL / $MEDDISTILL_DATA_DIR
rid = store.save_review(Review(pixel_sha256(px), "CXR", (FindingReview("nodule", True),), None,
                               "Nodule in the right upper zone.", "", outputs, 1, now_iso()), px)
"""

from model.review.pixels import pixel_sha256
from model.review.store import (
    InvalidReviewError,
    ReviewStore,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    default_data_dir,
    default_db_url,
    review_id,
)
from model.review.types import FindingReview, ModelVersion, Review, now_iso

__all__ = [
    "FindingReview",
    "InvalidReviewError",
    "ModelVersion",
    "Review",
    "ReviewStore",
    "SchemaTooNewError",
    "StoreError",
    "StoreUnavailableError",
    "default_data_dir",
    "default_db_url",
    "now_iso",
    "pixel_sha256",
    "review_id",
]
