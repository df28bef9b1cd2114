"""Optimal transport for SAOT: pure torch, no mmseg/mmengine imports.

Solvers (all solve the same entropic unbalanced problem, POT's
``sinkhorn_unbalanced(..., reg_type='kl')``):

* :func:`sinkhorn`: dense cost ``(N, M)`` or ``(B, N, M)``, differentiable.
* :func:`sinkhorn_online`: features plus a metric, never holds ``N x M``.
* :func:`block_sparse_sinkhorn`: cost evaluated only on selected block pairs.

Label transfer: :func:`transfer_labels` (from a plan or a result), and the
baselines :func:`nn_transfer` and :func:`knn_transfer`.
"""
from ._loop import SinkhornConvergenceWarning
from .block_sparse import BlockSparseResult, block_sparse_sinkhorn
from .costs import cosine_cost, sqeuclidean_cost
from .labels import LabelTransfer, NNTransfer, knn_transfer, nn_transfer, transfer_labels
from .online import sinkhorn_online
from .result import SinkhornResult
from .sinkhorn import sinkhorn

__all__ = [
    'sinkhorn', 'sinkhorn_online', 'block_sparse_sinkhorn', 'SinkhornResult',
    'BlockSparseResult', 'SinkhornConvergenceWarning', 'transfer_labels', 'nn_transfer',
    'knn_transfer', 'LabelTransfer', 'NNTransfer', 'cosine_cost', 'sqeuclidean_cost'
]
