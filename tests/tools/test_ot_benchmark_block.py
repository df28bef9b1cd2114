"""tools/ot_benchmark/block.py: the block-sparse section's worker, labels and cells."""
import pytest
from tool_scripts import import_tool_part
import torch


@pytest.fixture(scope='module')
def bench():
    return import_tool_part('ot_benchmark.block')


def test_block_worker_solves_a_street_scene_and_scores_labelled_targets(bench, scenes):
    common = dict(kind='block', device='cpu', dim=16, eps=0.05, rho=1.0, tol=1e-4, repeats=1,
                  selection='coverage', coverage=1.0, theta=4.0, block_size=8,
                  target_block_size=4, data='streets', features=str(scenes), seed=0)
    dense = bench.block_worker(dict(common, mode='dense'))
    block = bench.block_worker(dict(common, mode='block'))
    assert len(dense['labels']) == len(block['labels']) == 32
    assert dense['acc'] > 0.9  # separable classes; the two ignore targets are not scored
    assert block['labels'] == dense['labels']  # coverage 1: every block kept


def test_truncation_labels_vote_with_dense_potentials_on_the_block_support(bench):
    import mmseg_saot.ot as ot
    # Unstructured features and labels: near-tied votes, so truncation and the
    # restricted potentials both move labels.
    gen = torch.Generator().manual_seed(0)
    xs = torch.nn.functional.normalize(torch.randn(96, 8, generator=gen), dim=1)
    xt = torch.nn.functional.normalize(torch.randn(32, 8, generator=gen), dim=1)
    ls = torch.randint(0, 3, (96,), generator=gen)
    block = ot.block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-6, block_size=8,
                                     target_block_size=4, selection='topk', topk=3)
    support = block.plan > 0
    assert 0.1 < float(support.float().mean()) < 0.9  # some blocks dropped
    dense = ot.sinkhorn(ot.cosine_cost(xs, xt), epsilon=0.05, rho=1.0, tol=1e-6)
    votes = (dense.plan * support).t() @ torch.nn.functional.one_hot(ls, 19).float()
    got = bench.truncation_labels(ot, block, dense.f, ls)
    assert got == votes.argmax(1).tolist()
    # neither the block solution's labels nor the dense ones
    assert got != ot.transfer_labels(block, ls, 19).labels.tolist()
    assert got != ot.transfer_labels(dense, ls, 19).labels.tolist()
    assert bench.changed_share([0, 1, 2, 3], [0, 1, 5, 5]) == 0.5


def test_block_run_reports_truncation_labels_from_the_dense_run(bench, scenes):
    spec = dict(kind='block', device='cpu', dim=16, eps=0.05, rho=1.0, tol=1e-4, repeats=1,
                selection='coverage', coverage=1.0, theta=4.0, block_size=8,
                target_block_size=4, data='streets', features=str(scenes), seed=0)
    dense, block = bench.dense_and_block(spec, isolate=False)
    assert bench.truncation_cell(dense, block) == '0.00 %'
    assert block['truncation_labels'] == block['labels']  # full support: nothing truncated
