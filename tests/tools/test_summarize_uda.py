"""tools/summarize_uda.py: one table from run evaluations and pseudo-label scores."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
import summarize_uda  # noqa: E402


def write_run(work_dir: Path, iteration: int, teacher: dict, student: dict,
              dataset: dict = None) -> None:
    (work_dir / 'eval').mkdir(parents=True, exist_ok=True)
    record = dict(iter=iteration,
                  teacher=dict(metrics={}, per_class_iou=teacher),
                  student=dict(metrics={}, per_class_iou=student))
    if dataset:  # TeacherStudentValLoop records it (runs before that do not)
        record['dataset'] = dataset
    path = work_dir / 'eval' / f'iter_{iteration}.json'
    path.write_text(json.dumps(record))
    os.utime(path, (1e9 + iteration, 1e9 + iteration))  # one run: validated in order


@pytest.fixture
def sources(tmp_path):
    run = tmp_path / 'run'
    write_run(run, 10, dict(road=50.0, car=10.0, bus=None), dict(road=40.0, car=0.0, bus=None))
    write_run(run, 2, dict(road=1.0, car=1.0, bus=None), dict(road=2.0, car=4.0, bus=None))
    scores = tmp_path / 'pl.json'
    scores.write_text(json.dumps(dict(num_images=5, methods=dict(
        nn=dict(per_class_iou=dict(road=30.0, car=None, bus=None))))))
    return run, scores


def test_evaluations_of_an_earlier_run_in_the_folder_are_not_taken_as_the_last(
        sources, tmp_path, capsys):
    # a new, shorter run into the same work_dir (not resumed): its iter_2.json is newer
    # than the earlier run's iter_10.json, which was taken without a word
    run, _ = sources
    os.utime(run / 'eval' / 'iter_2.json', (2e9, 2e9))
    assert summarize_uda.main(['--column', f'latest=run:{run}:teacher']) == 0
    captured = capsys.readouterr()
    assert '| road | 1.0 |' in captured.out
    assert (f'warning: {run}/eval/ holds evaluations of more than one run: iter_10.json was '
            'written before iter_2.json; the latest run\'s last, iter_2.json, is used') \
        in captured.err
    # a copy without file times (cp -r): seconds apart in any order, one run
    os.utime(run / 'eval' / 'iter_2.json', (1e9 + 15, 1e9 + 15))
    assert summarize_uda.main(['--column', f'latest=run:{run}:teacher']) == 0
    captured = capsys.readouterr()
    assert '| road | 50.0 |' in captured.out and 'warning' not in captured.err


def test_runs_validated_on_different_numbers_of_images_are_warned_about(tmp_path, capsys):
    # a run validated on a subset (val_dataloader.dataset.indices) and a full one: the
    # same type and folder, so the table compared them as if over the same images
    identity = dict(type='CityscapesDataset', data_root='data/cs', img_path='data/cs/val')
    write_run(tmp_path / 'sub', 2, dict(road=50.0), dict(road=50.0),
              dataset=dict(identity, num_images=4))
    write_run(tmp_path / 'full', 2, dict(road=40.0), dict(road=40.0),
              dataset=dict(identity, num_images=50))
    assert summarize_uda.main(['--column', f'sub=run:{tmp_path / "sub"}:teacher',
                               '--column', f'full=run:{tmp_path / "full"}:teacher']) == 0
    assert ('warning: the columns are scored on different numbers of images (sub: 4; full: '
            '50): their IoUs are not over the same images.') in capsys.readouterr().err


def test_columns_from_runs_and_pseudo_labels(sources, tmp_path, capsys):
    run, scores = sources
    out = tmp_path / 'table'
    assert summarize_uda.main(['--column', f'NN=pl:{scores}:nn',
                               '--column', f'early=run:{run}:student@2',
                               '--column', f'final=run:{run}:teacher',
                               '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| road | 30.0 | 2.0 | 50.0 |' in printed
    assert '| car | - | 4.0 | 10.0 |' in printed
    assert 'bus' not in printed  # absent from every ground truth
    result = json.loads(out.with_suffix('.json').read_text())
    assert result['NN']['miou'] == 30.0 and result['early']['miou'] == 3.0
    assert result['final']['miou'] == 30.0  # the last evaluation by default
    assert 'final: teacher head, iteration 10' in out.with_suffix('.md').read_text()


def test_bad_columns_are_clear_messages(sources, python, tmp_path, capsys):
    run, scores = sources
    broken = tmp_path / 'broken.json'
    broken.write_text('{"methods": ')
    cases = ((f'x=run:{run}:student@99', 'no evaluation at iteration 99'),
             (f'x=run:{run}:student@last', "@ITER must be an iteration number"),
             (f'x=run:{run}:ema', "per-class IoU for the ema head; it has ["),
             (f'x=pl:{scores}:saot', "no method 'saot'"),
             (f'x=pl:{broken}:nn', f'{broken} is not valid JSON ('),
             (f'x=pl:{tmp_path}/nope.json:nn', f'{tmp_path}/nope.json does not exist.'),
             (f'x=pl:{tmp_path}:nn', f'{tmp_path} is a folder; give the file in it (e.g. '
              f'{tmp_path}/pseudo_label_eval_val/pseudo_label_miou.json for pl:).'),
             ('x=foo', 'expected LABEL='))
    for spec, message in cases:  # in-process: a subprocess each took ~5 s of imports
        try:
            code = summarize_uda.main(['--column', spec])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
        assert code == 2 and message in capsys.readouterr().err
    # and once from the command line: one line on stderr, no traceback
    tool = str(Path(__file__).resolve().parents[2] / 'tools' / 'summarize_uda.py')
    result = subprocess.run([python, tool, '--column', f'x=pl:{broken}:nn'],
                            capture_output=True, text=True)
    assert result.returncode == 2 and f'{broken} is not valid JSON (' in result.stderr
    assert 'Traceback' not in result.stderr


def test_missing_runs_iterations_and_unwritable_out_are_named(sources, tmp_path, capsys):
    run, _ = sources
    afile = tmp_path / 'afile'
    afile.write_text('')
    empty = tmp_path / 'empty_run'
    empty.mkdir()
    for args, message in (
            ([f'x=run:{tmp_path}/nope:teacher'], f'error: run folder {tmp_path}/nope does not '
             'exist.'),
            ([f'x=run:{afile}:teacher'], f'error: run folder {afile} is a file: give the run\'s '
             'work_dir (the folder holding eval/)'),
            ([f'x=run:{empty}:teacher'], f'error: no evaluation in {empty}/eval/: train with '),
            ([f'x=run:{run}:teacher@7'], f'error: no evaluation at iteration 7 in {run}/eval/; '
             'it has iterations 2, 10.'),
            ([f'x=run:{run}:teacher', '--out', f'{afile}/table'],
             f'error: --out {afile}/table: cannot write there (')):
        argv = ['--column', args[0], *args[1:]]
        assert summarize_uda.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(message), err
    assert afile.read_text() == ''


def test_reference_columns_from_csv_and_json(sources, tmp_path, capsys):
    run, _ = sources
    published = tmp_path / 'other_method.csv'  # e.g. another UDA method's table row
    published.write_text('class,IoU\nroad,90.5\ncar,-\nbus,nan\nmIoU,61.2\n')
    by_hand = tmp_path / 'partial.json'
    by_hand.write_text(json.dumps(dict(per_class_iou=dict(road=80.0, car=20.0),
                                       source='paper, Table 2')))
    flat = tmp_path / 'flat.json'
    flat.write_text(json.dumps(dict(road=70.0, bus=float('nan'))))  # as MMSeg's tables
    out = tmp_path / 'table'
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'other=ref:{published}',
                               '--column', f'paper=ref:{by_hand}',
                               '--column', f'flat=ref:{flat}', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| road | 50.0 | 90.5 | 80.0 | 70.0 |' in printed
    assert '| car | 10.0 | - | 20.0 | - |' in printed
    # a reported mean is shown as reported (*), the others are means of their classes
    assert '| **mIoU** | **30.0** | **61.2*** | **50.0** | **70.0** |' in printed
    assert f'- other: reference ({published}) (* mIoU as reported there)' in printed
    assert f'- paper: paper, Table 2 ({by_hand})' in printed
    result = json.loads(out.with_suffix('.json').read_text())
    assert result['other']['miou'] == 61.2 and result['other']['per_class_iou']['car'] is None
    # bus: nan in the csv and NaN in the JSON (MMSeg's tables), read as absent (was refused)
    assert result['flat']['per_class_iou'].get('bus') is None


@pytest.mark.parametrize('text, message', [
    ('road,90\nlorry,10\n', "names classes the other columns do not have: ['lorry']; use "
     "these names: ['road', 'car', 'bus']"),
    ('road,0.9x\n', "the IoU of 'road' is '0.9x', not a number"),
    ('road,150\n', 'IoU is in % (0 to 100)'),
    ('road\n', 'every line must be class,IoU'),
])
def test_bad_reference_files_are_clear_messages(sources, tmp_path, capsys, text, message):
    run, _ = sources
    reference = tmp_path / 'ref.csv'
    reference.write_text(text)
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'other=ref:{reference}']) == 2
    assert message in capsys.readouterr().err


def test_a_json_reference_mean_spelt_miou_as_the_eval_files_do_is_read(sources, tmp_path,
                                                                        capsys):
    # a top-level "mIoU" (as this repo's eval JSON spells it) was dropped without a word,
    # and a per_class_iou list was a raw TypeError
    run, _ = sources
    reported = tmp_path / 'reported.json'
    reported.write_text(json.dumps(dict(per_class_iou=dict(road=95.0, car=20.0), mIoU=99.0)))
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'paper=ref:{reported}']) == 0
    assert '| **mIoU** | **30.0** | **99.0*** |' in capsys.readouterr().out
    listed = tmp_path / 'listed.json'
    listed.write_text(json.dumps(dict(per_class_iou=[['road', 95.0]])))
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'paper=ref:{listed}']) == 2
    assert (f'{listed}: per_class_iou must be an object of class: IoU (%), got a list'
            in capsys.readouterr().err)


def test_a_label_given_twice_is_refused(sources, capsys):
    run, _ = sources
    assert summarize_uda.main(['--column', f'A=run:{run}:teacher',
                               '--column', f'A=run:{run}:student']) == 2
    assert capsys.readouterr().err == ("error: --column: the label 'A' is given twice; give "
                                       'every column its own label.\n')


@pytest.mark.parametrize('name, content, message', [
    ('twice.csv', b'class,IoU\nroad,90\ncar,5\nroad,80\n',
     "{path}: 'road' is listed twice (lines 2 and 4); keep one line per class."),
    ('latin1.csv', b'road,90\ncar\xff,5\n',
     '{path} is not UTF-8 text (byte 0xff on line 2); save it as UTF-8.'),
    ('latin1.json', b'{"road": 90,\n "car\xff": 5}',
     '{path} is not UTF-8 text (byte 0xff on line 2); save it as UTF-8.'),
])
def test_reference_files_with_a_class_twice_or_not_utf8_are_named(sources, tmp_path, capsys,
                                                                   name, content, message):
    run, _ = sources
    reference = tmp_path / name
    reference.write_bytes(content)
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'other=ref:{reference}']) == 2
    assert capsys.readouterr().err == f'error: {message.format(path=reference)}\n'


def test_a_csv_with_a_byte_order_mark_reads_its_header(sources, tmp_path, capsys):
    run, _ = sources
    reference = tmp_path / 'excel.csv'
    reference.write_bytes('class,IoU\nroad,90\ncar,10\n'.encode('utf-8-sig'))
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'other=ref:{reference}']) == 0
    assert '| **mIoU** | **30.0** | **50.0** |' in capsys.readouterr().out


def test_one_column_has_no_change_line(sources, capsys):
    run, _ = sources
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher']) == 0
    assert 'mIoU change' not in capsys.readouterr().out


def test_a_partial_reference_mean_is_kept_with_a_warning(sources, tmp_path, capsys):
    run, _ = sources
    partial = tmp_path / 'partial.csv'
    partial.write_text('road,70\n')
    extra = tmp_path / 'extra.json'
    extra.write_text(json.dumps(dict(road=70.0, car=10.0, bus=40.0)))
    full = tmp_path / 'full.csv'
    full.write_text('road,70\ncar,10\nbus,-\n')
    reported = tmp_path / 'reported.csv'
    reported.write_text('road,70\nmIoU,55\n')
    out = tmp_path / 'table'
    assert summarize_uda.main(['--column', f'ours=run:{run}:teacher',
                               '--column', f'partial=ref:{partial}',
                               '--column', f'extra=ref:{extra}',
                               '--column', f'full=ref:{full}',
                               '--column', f'reported=ref:{reported}',
                               '--out', str(out)]) == 0
    captured = capsys.readouterr()
    # the mean over the classes a reference gives, as documented
    assert '| **mIoU** | **30.0** | **70.0** | **40.0** | **40.0** | **55.0*** |' in captured.out
    assert captured.err.splitlines() == [
        "warning: --column partial: its mIoU is the mean over the 1 class it gives, the other "
        "columns' over 2 (it lacks car); the mIoU row compares means over different classes. "
        'Give every class, or the reported mean as mIoU,<value>.',
        "warning: --column extra: its mIoU is the mean over the 3 classes it gives, the other "
        "columns' over 2 (it adds bus); the mIoU row compares means over different classes. "
        'Give every class, or the reported mean as mIoU,<value>.']
    notes = out.with_suffix('.md').read_text()
    assert f"- partial: reference ({partial}) (its mIoU is the mean over the 1 class it " \
           "gives, the other columns' over 2 (it lacks car))" in notes
    assert json.loads(out.with_suffix('.json').read_text())['partial']['miou'] == 70.0


def write_scores(path: Path, iou: dict, **scored_on) -> Path:
    """A ``pseudo_label_miou.json`` with one method ``nn`` (``scored_on``: split, dataset)."""
    path.write_text(json.dumps(dict(num_images=5, **scored_on,
                                    methods=dict(nn=dict(per_class_iou=iou)))))
    return path


def test_columns_of_different_classes_are_refused(sources, tmp_path, capsys):
    run, _ = sources
    other = tmp_path / 'other_dataset'  # another dataset's class list
    write_run(other, 4, dict(road=50.0, sky=10.0), dict(road=40.0, sky=0.0))
    assert summarize_uda.main(['--column', f'cs=run:{run}:teacher',
                               '--column', f'other=run:{other}:teacher']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --column cs (teacher head, iteration 10) and --column other '
                          '(teacher head, iteration 4) are scored on different classes (3 and '
                          "2; only in cs: ['car', 'bus']; only in other: ['sky']): "), err


def test_columns_of_different_splits_are_warned_about(sources, tmp_path, capsys):
    run, _ = sources
    dataset = dict(type='CityscapesDataset', data_root='data/cs',
                   img_path='data/cs/leftImg8bit/train')
    train = write_scores(tmp_path / 'train.json', dict(road=30.0, car=None, bus=None),
                         split='train', dataset=dataset)
    out = tmp_path / 'table'
    assert summarize_uda.main(['--column', f'NN=pl:{train}:nn',
                               '--column', f'final=run:{run}:teacher', '--out', str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ('warning: the columns are scored on different splits (NN: train; '
                            'final: val): their IoUs are not over the same images.\n')
    assert 'on the target val split' not in captured.out
    assert ('- NN: nn pseudo-labels, 5 images, train split, CityscapesDataset '
            'data/cs/leftImg8bit/train') in captured.out
    assert '- final: teacher head, iteration 10, val split' in captured.out
    assert json.loads(out.with_suffix('.json').read_text())['NN']['split'] == 'train'


def test_one_split_is_named_in_the_title_without_a_warning(sources, tmp_path, capsys):
    run, _ = sources
    val = write_scores(tmp_path / 'val.json', dict(road=30.0, car=None, bus=None), split='val')
    assert summarize_uda.main(['--column', f'NN=pl:{val}:nn',
                               '--column', f'final=run:{run}:teacher']) == 0
    captured = capsys.readouterr()
    assert captured.err == '' and 'Per-class IoU (%) on the target val split' in captured.out


def test_a_file_without_its_split_reads_as_unknown(sources, capsys):
    _, scores = sources  # written before the split was recorded
    assert summarize_uda.main(['--column', f'NN=pl:{scores}:nn']) == 0
    captured = capsys.readouterr()
    assert captured.err == ('warning: --column NN: its file does not record the split it was '
                            'scored on (written before the split was recorded): split unknown; '
                            'score it again with tools/generate_pseudo_labels.py to record '
                            'it.\n')
    assert '- NN: nn pseudo-labels, 5 images, split unknown' in captured.out


def write_log(work_dir: Path, *entries: dict) -> Path:
    log = work_dir / '20260101_000000' / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    log.write_text(''.join(json.dumps(entry) + '\n' for entry in entries))
    return log


def test_a_run_not_validated_yet_is_one_line_naming_it(tmp_path, capsys):
    run = tmp_path / 'training'
    log = write_log(run, dict(loss=1.0, iter=10), dict(loss=0.5, iter=20))
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher']) == 2
    assert capsys.readouterr().err == (
        f'error: no evaluation in {run}/eval/: the run has not been validated yet ({log}: it '
        'reaches iteration 20, no mIoU); summarise it after its first validation (every '
        'train_cfg.val_interval iterations and at the end of training).\n')


def test_a_run_validated_without_per_class_iou_says_what_to_set(tmp_path, capsys):
    run = tmp_path / 'plain_val_loop'
    log = write_log(run, dict(loss=1.0, iter=10), {'mIoU': 20.0, 'step': 10})
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher']) == 2
    assert capsys.readouterr().err == (
        f'error: no evaluation in {run}/eval/: the run was validated ({log} logs an mIoU) '
        f'without writing per-class IoU; {summarize_uda.VAL_LOOP_ADVICE}\n')
    (run / 'eval').mkdir()  # TeacherStudentValLoop without ClassIoUMetric
    (run / 'eval' / 'iter_10.json').write_text(json.dumps(dict(
        iter=10, teacher=dict(metrics=dict(mIoU=20.0), per_class_iou={}))))
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher']) == 2
    assert capsys.readouterr().err == (
        f"error: {run}/eval/iter_10.json: the teacher head was validated without per-class IoU "
        f"(metrics ['mIoU']); {summarize_uda.VAL_LOOP_ADVICE}\n")


def test_a_column_without_any_iou_is_named(tmp_path, capsys):
    empty = write_scores(tmp_path / 'empty.json', dict(road=None, car=None), split='val')
    assert summarize_uda.main(['--column', f'NN=pl:{empty}:nn']) == 2
    assert capsys.readouterr().err == (
        'error: --column NN (nn pseudo-labels, 5 images): no class has an IoU (every class is '
        'absent from its ground truth); nothing to show.\n')


def test_runs_validated_on_other_images_are_warned_about(sources, tmp_path, capsys):
    run, _ = sources  # written before the images were recorded: not compared
    iou = dict(road=50.0, car=10.0, bus=None)
    cityscapes = dict(type='CityscapesDataset', data_root='data/cs',
                      img_path='data/cs/leftImg8bit/val')
    acdc = dict(cityscapes, data_root='data/acdc', img_path='data/acdc/rgb/val')
    write_run(tmp_path / 'a', 4, iou, iou, dataset=cityscapes)
    write_run(tmp_path / 'b', 4, iou, iou, dataset=acdc)
    assert summarize_uda.main(['--column', f'a=run:{tmp_path / "a"}:teacher',
                               '--column', f'old=run:{run}:teacher',
                               '--column', f'b=run:{tmp_path / "b"}:teacher']) == 0
    assert capsys.readouterr().err == (
        'warning: the columns are scored on different images (a: CityscapesDataset '
        'data/cs/leftImg8bit/val; b: CityscapesDataset data/acdc/rgb/val): their IoUs are not '
        'over the same images.\n')
    write_run(tmp_path / 'c', 4, iou, iou, dataset=cityscapes)
    assert summarize_uda.main(['--column', f'a=run:{tmp_path / "a"}:teacher',
                               '--column', f'c=run:{tmp_path / "c"}:teacher']) == 0
    assert capsys.readouterr().err == ''


def test_a_run_folder_with_brackets_and_other_eval_files_reads_its_evaluations(tmp_path,
                                                                                capsys):
    # glob patterns in the folder name ('[1]') and files that are not iter_<N>.json
    # beside the evaluations (a user's copy, a backup) must not hide or break the run
    run = tmp_path / 'sweep[1]'
    write_run(run, 10, dict(road=50.0, car=10.0), dict(road=40.0, car=0.0))
    write_run(run, 9, dict(road=1.0, car=1.0), dict(road=2.0, car=4.0))
    (run / 'eval' / 'iter_best.json').write_text(json.dumps(dict(iter=3)))
    (run / 'eval' / 'iter_10.json~').write_text('{')
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher']) == 0
    assert '| road | 50.0 |' in capsys.readouterr().out  # iteration 10, after 9
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher@7']) == 2
    assert capsys.readouterr().err.startswith(
        f'error: no evaluation at iteration 7 in {run}/eval/; it has iterations 9, 10.')


def test_a_run_folder_with_brackets_not_validated_yet_names_its_log(tmp_path, capsys):
    run = tmp_path / 'training[1]'
    log = write_log(run, dict(loss=1.0, iter=10))
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher']) == 2
    assert f'the run has not been validated yet ({log}: it reaches iteration 10' in (
        capsys.readouterr().err)


@pytest.mark.parametrize('given, written', [('tables/', 'tables/uda_table'),
                                            ('tables', 'tables/uda_table'),
                                            ('new/t.md', 'new/t'), ('t.json', 't'), ('t', 't')])
def test_out_as_a_folder_or_with_a_suffix_writes_named_files(sources, tmp_path, monkeypatch,
                                                             given, written):
    run, _ = sources
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'tables').mkdir()
    assert summarize_uda.main(['--column', f'x=run:{run}:teacher', '--out', given]) == 0
    assert (tmp_path / f'{written}.md').is_file() and (tmp_path / f'{written}.json').is_file()
    assert not list(tmp_path.rglob('.md')) and not list(tmp_path.rglob('*.md.md'))
