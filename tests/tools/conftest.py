"""Fixtures of the tools/ot_benchmark/ tests."""
import pytest
from tool_scripts import import_tool_part
import torch


@pytest.fixture(scope='module')
def streets():
    return import_tool_part('ot_benchmark.streets')


@pytest.fixture
def scenes(streets, tmp_path):
    """A fake feature cache: 9 images of 4 x 8 patches, d 16, two seeds."""
    gen = torch.Generator().manual_seed(0)
    for seed in (0, 3):
        labels = torch.randint(0, 3, (9, 4, 8), generator=gen)
        centres = torch.randn(3, 16, generator=gen) * 3
        feats = centres[labels].permute(0, 3, 1, 2) + torch.randn(9, 16, 4, 8, generator=gen)
        labels[1, 0, :5] = 255  # unlabelled source patches
        labels[0, 1, :2] = 255  # unlabelled target patches
        torch.save(dict(feats=(feats + 5).half(), labels=labels.to(torch.uint8)),
                   streets.streets_seed_file(tmp_path, seed))
    return tmp_path
