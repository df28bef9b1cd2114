"""tools/benchmark_ot.py: the street-scene working point of the block-sparse section."""
from pathlib import Path

import pytest
from tool_scripts import load_tool
import torch

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark_ot.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


@pytest.fixture
def scenes(tool, tmp_path):
    """A fake feature cache: 9 images of 4 x 8 patches, d 16, two seeds."""
    gen = torch.Generator().manual_seed(0)
    for seed in (0, 3):
        labels = torch.randint(0, 3, (9, 4, 8), generator=gen)
        centres = torch.randn(3, 16, generator=gen) * 3
        feats = centres[labels].permute(0, 3, 1, 2) + torch.randn(9, 16, 4, 8, generator=gen)
        labels[1, 0, :5] = 255  # unlabelled source patches
        labels[0, 1, :2] = 255  # unlabelled target patches
        torch.save(dict(feats=(feats + 5).half(), labels=labels.to(torch.uint8)),
                   tool.streets_seed_file(tmp_path, seed))
    return tmp_path


def test_streets_problem_drops_unlabelled_sources_and_centres_each_domain(tool, scenes):
    xs, ls, xt, lt = tool.streets_problem(str(scenes), 3)
    assert xs.shape == (8 * 32 - 5, 16) and ls.shape == (8 * 32 - 5,)
    assert xt.shape == (32, 16) and lt.shape == (32,)
    assert not (ls == 255).any() and int((lt == 255).sum()) == 2
    torch.testing.assert_close(xs.norm(dim=1), torch.ones(len(xs)))
    # the +5 offset shared by every feature is gone: features are centred first
    raw = torch.load(tool.streets_seed_file(scenes, 3))['feats'].float()
    raw = raw.flatten(2).transpose(1, 2)
    assert (xt * torch.nn.functional.normalize(raw[0], dim=1)).sum(1).mean() < 0.9


def test_block_worker_solves_a_street_scene_and_scores_labelled_targets(tool, scenes):
    common = dict(kind='block', device='cpu', dim=16, eps=0.05, rho=1.0, tol=1e-4, repeats=1,
                  selection='coverage', coverage=1.0, theta=4.0, block_size=8,
                  target_block_size=4, data='streets', features=str(scenes), seed=0)
    dense = tool.block_worker(dict(common, mode='dense'))
    block = tool.block_worker(dict(common, mode='block'))
    assert len(dense['labels']) == len(block['labels']) == 32
    assert dense['acc'] > 0.9  # separable classes; the two ignore targets are not scored
    assert block['labels'] == dense['labels']  # coverage 1: every block kept


def test_streets_features_needs_the_offline_weights(tool, tmp_path):
    with pytest.raises(SystemExit, match='make weights'):
        tool.streets_features([0], str(tmp_path / 'none'), weights=str(tmp_path / 'w'))


def test_cached_seeds_are_not_recomputed(tool, scenes):
    # both seeds are in the folder: no backbone run, so no weights needed
    assert tool.streets_features([0, 3], str(scenes), weights='/nonexistent') is None


def test_truncation_labels_vote_with_dense_potentials_on_the_block_support(tool):
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
    got = tool.truncation_labels(ot, block, dense.f, ls)
    assert got == votes.argmax(1).tolist()
    # neither the block solution's labels nor the dense ones
    assert got != ot.transfer_labels(block, ls, 19).labels.tolist()
    assert got != ot.transfer_labels(dense, ls, 19).labels.tolist()
    assert tool.changed_share([0, 1, 2, 3], [0, 1, 5, 5]) == 0.5


def test_block_run_reports_truncation_labels_from_the_dense_run(tool, scenes):
    spec = dict(kind='block', device='cpu', dim=16, eps=0.05, rho=1.0, tol=1e-4, repeats=1,
                selection='coverage', coverage=1.0, theta=4.0, block_size=8,
                target_block_size=4, data='streets', features=str(scenes), seed=0)
    dense, block = tool.dense_and_block(spec, isolate=False)
    assert tool.truncation_cell(dense, block) == '0.00 %'
    assert block['truncation_labels'] == block['labels']  # full support: nothing truncated


def test_ctrl_c_keeps_the_sections_already_measured(tool, tmp_path, monkeypatch, capsys):
    def iterations(args, lines):
        lines.append('| iterations table |')

    def accuracy(args, device, lines):
        lines.append('| accuracy half')
        raise KeyboardInterrupt

    def block(*args):
        raise AssertionError('a later section must not run')

    monkeypatch.setattr(tool, 'iterations_section', iterations)
    monkeypatch.setattr(tool, 'accuracy_section', accuracy)
    monkeypatch.setattr(tool, 'block_section', block)
    out = tmp_path / 'ot.md'
    with pytest.raises(SystemExit) as stop:
        tool.main(['--device', 'cpu', '--sections', 'iters,accuracy,block', '--out', str(out)])
    assert stop.value.code == 130
    text = out.read_text()
    assert '| iterations table |' in text and '| accuracy half' in text
    assert '**Interrupted (Ctrl-C) in the accuracy section**' in text
    assert f'the sections measured so far are in {out}' in capsys.readouterr().err


def test_an_unknown_section_is_a_usage_error(tool, capsys):
    with pytest.raises(SystemExit) as stop:
        tool.main(['--sections', 'speed,blocks'])
    assert stop.value.code == 2
    assert '--sections: unknown blocks; choose from speed,iters,accuracy,block,fullres' in \
        capsys.readouterr().err


@pytest.mark.parametrize('option, value, message', [
    ('--sizes', '0', 'must be comma-separated integers >= 1; "0" in "0" is not one'),
    ('--sizes', '-5', 'must be comma-separated integers >= 1; "-5" in "-5" is not one'),
    ('--sizes', '16,abc', 'must be comma-separated integers >= 1; "abc" in "16,abc" is not one'),
    ('--sizes', '', 'must be comma-separated integers >= 1, got ""'),
    ('--dims', '0', 'must be comma-separated integers >= 1; "0" in "0" is not one'),
    ('--dims', '384,', 'must be comma-separated integers >= 1; "" in "384," is not one'),
    ('--block-seeds', '0,x', 'must be comma-separated integers >= 0; "x" in "0,x" is not one'),
    ('--block-seeds', '-1', 'must be comma-separated integers >= 0; "-1" in "-1" is not one'),
])
def test_bad_lists_are_usage_errors_before_any_solve(tool, tmp_path, monkeypatch, capsys,
                                                     option, value, message):
    def section(*args):
        raise AssertionError('no section may run')

    for name in ('speed_section', 'block_section'):
        monkeypatch.setattr(tool, name, section)
    with pytest.raises(SystemExit) as stop:
        tool.main(['--device', 'cpu', '--sections', 'speed,block', '--out',
                   str(tmp_path / 'ot.md'), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'argument {option}: {message}' in err and 'Traceback' not in err


def test_lists_are_parsed_into_integers(tool, tmp_path, monkeypatch):
    seen = {}

    def section(args, device, isolate, lines):
        seen.update(sizes=args.sizes, dims=args.dims, seeds=args.block_seeds)

    monkeypatch.setattr(tool, 'speed_section', section)
    tool.main(['--device', 'cpu', '--sections', 'speed', '--out', str(tmp_path / 'ot.md'),
               '--sizes', '16, 32', '--block-seeds', '0,3'])
    assert seen == dict(sizes=[16, 32], dims=[384, 1024], seeds=[0, 3])


def test_an_empty_section_name_is_named(tool, capsys):
    with pytest.raises(SystemExit) as stop:
        tool.main(['--sections', ''])
    assert stop.value.code == 2
    assert '--sections: unknown ""; choose from' in capsys.readouterr().err
