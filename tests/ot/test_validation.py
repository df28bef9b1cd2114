"""Input checks shared by the feature-based entry points (``ot/_validation.py``).

Tensors on the ``meta`` device stand for a second device, so that these run without a GPU:
the checks must stop before any computation touches them.
"""
import pytest
import torch

from mmseg_saot.ot import block_sparse_sinkhorn, knn_transfer, nn_transfer, sinkhorn_online

LABELS = torch.zeros(6, dtype=torch.long)

ENTRY_POINTS = {
    'sinkhorn_online': lambda x, y, **kw: sinkhorn_online(x, y, epsilon=0.1, **kw),
    'block_sparse_sinkhorn': lambda x, y, **kw: block_sparse_sinkhorn(x, y, epsilon=0.1, **kw),
    'nn_transfer': lambda x, y: nn_transfer(x, LABELS, y),
    'knn_transfer': lambda x, y: knn_transfer(x, LABELS, y, 2, k=3),
}


@pytest.mark.parametrize('name', sorted(ENTRY_POINTS))
def test_features_on_two_devices_are_named_with_both_devices(name):
    x, y = torch.randn(6, 4), torch.randn(5, 4, device='meta')
    names = ('source_feats', 'target_feats') if 'transfer' in name else ('x', 'y')
    with pytest.raises(ValueError, match=rf'`{names[0]}` and `{names[1]}` must be on the '
                       r'same device, got cpu and meta'):
        ENTRY_POINTS[name](x, y)


@pytest.mark.parametrize('name', ['sinkhorn_online', 'block_sparse_sinkhorn'])
def test_a_projection_on_another_device_says_where_to_move_it(name):
    x, y = torch.randn(6, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"`projection` must be on the features' device, "
                       r"cpu, got meta: move it with \.to\('cpu'\)"):
        ENTRY_POINTS[name](x, y, projection=torch.randn(4, 3, device='meta'))

