"""Per-iteration seeds (iteration_seeds.py): the views' and the dropout's streams."""
import torch

from mmseg_saot.models.segmentors.iteration_seeds import IterationSeedsMixin


class _Model(IterationSeedsMixin):
    def __init__(self, seed=0):
        self.seed, self.iteration = seed, None
        self.decode_head = torch.nn.Linear(2, 2)


def test_dropout_seeds_are_apart_from_every_iterations_view_seed():
    # the dropout seed was 2 s + 1 for the views' seed s: the masks of iteration i came
    # from the generator state of iteration 2 i + 1's strong views
    model = _Model()
    for run_seed in (0, 3):
        model.set_run_seed(run_seed, 0)
        views = {model._iteration_seed(i) for i in range(4001)}
        dropout = [model._dropout_seed(i) for i in range(2000)]
        assert views.isdisjoint(dropout)
        assert len(set(dropout)) == len(dropout)
        assert model._dropout_seed(5) == model._dropout_seed(5) < (1 << 63)


def test_the_iteration_rng_repeats_an_iteration_and_restores_the_callers_state():
    model = _Model(seed=4)
    model.iteration = 11
    torch.manual_seed(123)
    with model._iteration_rng():
        first = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(123)
    with model._iteration_rng():
        torch.testing.assert_close(torch.rand(3), first)
    torch.testing.assert_close(torch.rand(3), after)  # the caller's stream went on as before
    model.iteration = 12
    with model._iteration_rng():
        assert not torch.equal(torch.rand(3), first)
