r"""Item embeddings from the training graph's co-occurrence counts: a starting point for DGSR's table.

DGSR scores an item by the dot product of the session's representation with the item's embedding,
and learns that embedding only from the samples that have the item as a target or as a neighbour. On
a sparse catalogue (more items than sessions) most items are targets of a handful of samples, so their
randomly initialised rows stay mostly noise, and a new item next to the session's items cannot be
ranked from them. Co-visitation ranks such items from counts alone. This module gives every item a
starting row built from the same counts, which training then refines:

* ``C[a, b]`` counts the events of item ``b`` at most ``window`` positions away from an event of item
  ``a`` in the same session (both directions; an item next to itself is not counted);
* ``PPMI[a, b] = max(0, log(C[a, b] * |C| / (C[a, .] * C[., b])))`` (positive pointwise mutual
  information, which stops popular items from being everybody's neighbour);
* the ``d`` leading singular vectors: ``PPMI ~ U S V^T``, rows ``U sqrt(S)``, scaled to the standard
  deviation of DGSR's normal initialisation. Items that co-occur with nothing keep a zero row.

Only the graph the model trains on is read (the training graph leaves out validation sessions'
later events), so nothing the evaluation scores enters the counts. The matrix stays sparse throughout
(``torch.svd_lowrank`` on a sparse tensor): memory grows with the number of distinct pairs, so on a
big graph the counts come from its last sessions only, at most ``max_events`` events (in OTTO's files
session ids grow with time: the most recent sessions).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def cooccurrence_pairs(
    session: np.ndarray, item: np.ndarray, num_items: int, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, col, count)`` of ``C`` (see the module docstring), rows and columns sorted.

    ``session`` / ``item``: the events in session order (a session's events contiguous, in time
    order), as the temporal graph stores them.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    session = np.asarray(session, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    keys = []
    for offset in range(1, window + 1):
        same = session[offset:] == session[:-offset]
        left, right = item[:-offset][same], item[offset:][same]
        apart = left != right
        left, right = left[apart], right[apart]
        keys += [left * num_items + right, right * num_items + left]
    if not keys:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    pair, count = np.unique(np.concatenate(keys), return_counts=True)
    return pair // num_items, pair % num_items, count.astype(np.int64)


def positive_pmi(row: np.ndarray, col: np.ndarray, count: np.ndarray, num_items: int) -> np.ndarray:
    """``max(0, PMI)`` of each pair of :func:`cooccurrence_pairs` (aligned with its arrays)."""
    total = float(count.sum())
    row_sum = np.bincount(row, weights=count, minlength=num_items)
    col_sum = np.bincount(col, weights=count, minlength=num_items)
    pmi = np.log(count * total / (row_sum[row] * col_sum[col]))
    return np.maximum(pmi, 0.0)


def cooccurrence_embedding(
    graph: Any,
    dim: int,
    window: int = 2,
    *,
    max_events: int | None = None,
    scale: float = 0.1,
    niter: int = 4,
) -> torch.Tensor:
    """``[num_items, dim]`` float32 rows from the PPMI of ``graph``'s co-occurrence counts.

    ``graph``: a :class:`~gnn_recsys.graph.temporal_graph.TemporalGraph` (its event arrays are read
    in session order); ``max_events``: count in its last sessions only, at most this many events
    (None: all). The random projection of ``torch.svd_lowrank`` draws from torch's global
    generator, so a seeded run gives the same rows. ``scale``: the standard deviation of the rows
    that co-occur with something (zero rows stay zero).
    """
    num_items = int(graph.num_items)
    session_ptr = np.asarray(graph.session_ptr)
    first_session = 0
    if max_events is not None and graph.num_events > max_events:
        # the first session boundary from which at most max_events events remain
        first_session = int(np.searchsorted(session_ptr, graph.num_events - max_events))
    first = int(session_ptr[first_session])
    if first:
        logger.info(
            "co-occurrence init: counting the last %d of %d events",
            graph.num_events - first,
            graph.num_events,
        )
    session = np.repeat(np.arange(first_session, graph.num_sessions), np.diff(session_ptr[first_session:]))
    row, col, count = cooccurrence_pairs(session, np.asarray(graph.ev_item[first:]), num_items, window)
    weight = positive_pmi(row, col, count, num_items)
    keep = weight > 0
    out = torch.zeros(num_items, dim)
    if not keep.any():
        logger.warning("co-occurrence init: no item pair within %d events of each other; zero rows", window)
        return out
    # Only the items with a positive-PMI neighbour (the matrix is symmetric: rows = columns) enter the
    # factorisation, renumbered 0..m-1: the dense m x dim blocks of svd_lowrank, not num_items x dim.
    row, col, weight = row[keep], col[keep], weight[keep]
    active = np.unique(row)
    size = len(active)
    matrix = torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([np.searchsorted(active, row), np.searchsorted(active, col)])),
        torch.from_numpy(weight.astype(np.float32)),
        (size, size),
        check_invariants=False,
    )
    with (
        warnings.catch_warnings()
    ):  # "Sparse CSR tensor support is in beta": its product with a dense matrix is not
        warnings.simplefilter("ignore", UserWarning)
        # CSR: svd_lowrank's products run in MKL; 2.5x faster than COO on 17M non-zeros (1.47M items)
        matrix = matrix.coalesce().to_sparse_csr()
    rank = min(dim, size)
    left, singular, _ = torch.svd_lowrank(matrix, q=rank, niter=niter)
    rows = left * singular.clamp(min=0).sqrt()
    out[torch.from_numpy(active), :rank] = rows * (scale / rows.std().clamp(min=1e-12))
    logger.info(
        "co-occurrence init: %d pairs of %d items within %d events, %d with positive PMI, %d items",
        len(count),
        num_items,
        window,
        len(weight),
        size,
    )
    return out
