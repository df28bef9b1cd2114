"""Global descriptors and source retrieval."""
import torch

from mmseg_saot.models.labelers import global_descriptor, retrieve


def test_retrieval_picks_the_most_similar_source():
    gen = torch.Generator().manual_seed(0)
    sources = torch.randn(5, 10, 8, generator=gen)
    target = sources[3:4] + 0.05 * torch.randn(1, 10, 8, generator=gen)
    idx = retrieve(global_descriptor(target), global_descriptor(sources), k=2)
    assert idx.shape == (1, 2)
    assert int(idx[0, 0]) == 3
    assert retrieve(global_descriptor(target), global_descriptor(sources), k=9).shape == (1, 5)
