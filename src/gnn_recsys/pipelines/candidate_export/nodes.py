"""Export node: Kaggle submission rows from a model's test candidates."""

from __future__ import annotations

import logging

import polars as pl

from gnn_recsys.export.candidates import to_submission

logger = logging.getLogger(__name__)


def make_submission(test_candidates: pl.DataFrame, k: int) -> pl.DataFrame:
    """``session_type,labels`` rows (clicks, carts, orders per session) from the top ``k`` candidates.

    Without a test file there are no test sessions: the file then holds only its header.
    """
    submission = to_submission(test_candidates, k=k)
    if submission.is_empty():
        logger.warning("No test sessions: the submission file holds only its header")
    return submission
