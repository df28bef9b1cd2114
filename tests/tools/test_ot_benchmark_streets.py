"""tools/ot_benchmark/streets.py: the street-scene features of the block-sparse section."""
import pytest
import torch


def test_streets_problem_drops_unlabelled_sources_and_centres_each_domain(streets, scenes):
    xs, ls, xt, lt = streets.streets_problem(str(scenes), 3)
    assert xs.shape == (8 * 32 - 5, 16) and ls.shape == (8 * 32 - 5,)
    assert xt.shape == (32, 16) and lt.shape == (32,)
    assert not (ls == 255).any() and int((lt == 255).sum()) == 2
    torch.testing.assert_close(xs.norm(dim=1), torch.ones(len(xs)))
    # the +5 offset shared by every feature is gone: features are centred first
    raw = torch.load(streets.streets_seed_file(scenes, 3))['feats'].float()
    raw = raw.flatten(2).transpose(1, 2)
    assert (xt * torch.nn.functional.normalize(raw[0], dim=1)).sum(1).mean() < 0.9


def test_streets_features_needs_the_offline_weights(streets, tmp_path):
    with pytest.raises(SystemExit, match='make weights'):
        streets.streets_features([0], str(tmp_path / 'none'), weights=str(tmp_path / 'w'))


def test_cached_seeds_are_not_recomputed(streets, scenes):
    # both seeds are in the folder: no backbone run, so no weights needed
    assert streets.streets_features([0, 3], str(scenes), weights='/nonexistent') is None
