import argparse
from unittest import mock

import pytest

from mmseg_saot.utils import arg_types


@pytest.mark.parametrize('kind, text, value', [
    (arg_types.positive_int, '3', 3),
    (arg_types.non_negative_int, '0', 0),
    (arg_types.positive_float, '1e-3', 1e-3),
    (arg_types.non_negative_float, '0', 0.0),
])
def test_values_in_range_pass(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize('kind, text, message', [
    (arg_types.positive_int, '0', 'must be an integer >= 1, got "0"'),
    (arg_types.positive_int, '1.5', 'must be an integer >= 1, got "1.5"'),
    (arg_types.non_negative_int, '-1', 'must be an integer >= 0, got "-1"'),
    (arg_types.positive_float, '0', 'must be a number > 0, got "0"'),
    (arg_types.positive_float, 'nan', 'must be a number > 0, got "nan"'),
    (arg_types.positive_float, 'abc', 'must be a number > 0, got "abc"'),
    (arg_types.non_negative_float, '-0.5', 'must be a number >= 0, got "-0.5"'),
    (arg_types.non_negative_float, 'inf', 'must be a number >= 0, got "inf"'),
])
def test_values_out_of_range_say_what_is_expected(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        kind(text)
    assert str(info.value) == message


def test_a_tool_rejects_a_bad_value_before_any_work(capsys):
    from tool_scripts import load_tool
    tool = load_tool('tools/generate_pseudo_labels.py')
    with pytest.raises(SystemExit) as info:
        tool.parse_args(['configs/saot/demo.py', '--num-overlays', '-1'])
    assert info.value.code == 2
    assert 'argument --num-overlays: must be an integer >= 0, got "-1"' in capsys.readouterr().err


def test_device_option_keeps_cpu_and_names_what_is_wrong():
    assert arg_types.device_option('cpu') == 'cpu'
    with pytest.raises(argparse.ArgumentTypeError, match='"tpu" is not a device'):
        arg_types.device_option('tpu')
    with pytest.raises(argparse.ArgumentTypeError, match='only cpu and cuda'):
        arg_types.device_option('meta')


def test_device_option_checks_the_gpus_this_machine_has():
    with mock.patch('torch.cuda.is_available', return_value=False):
        with pytest.raises(argparse.ArgumentTypeError, match='no usable CUDA GPU.*--device cpu'):
            arg_types.device_option('cuda')
    with mock.patch('torch.cuda.is_available', return_value=True), \
            mock.patch('torch.cuda.device_count', return_value=2):
        assert arg_types.device_option('cuda') == 'cuda'
        assert arg_types.device_option('cuda:1') == 'cuda:1'
        with pytest.raises(argparse.ArgumentTypeError, match='2 CUDA GPU.*cuda:0 to cuda:1'):
            arg_types.device_option('cuda:2')


def test_device_option_is_a_usage_error_of_the_option():
    parser = argparse.ArgumentParser(prog='tool')
    parser.add_argument('--device', type=arg_types.device_option)
    with mock.patch('sys.stderr') as stderr, pytest.raises(SystemExit) as exit_info:
        parser.parse_args(['--device', 'tpu'])
    assert exit_info.value.code == 2
    printed = ''.join(call.args[0] for call in stderr.write.call_args_list)
    assert 'argument --device: "tpu" is not a device' in printed


def test_output_file_makes_its_folder_and_names_what_is_in_the_way(tmp_path):
    out = tmp_path / 'new' / 'table.md'
    assert arg_types.output_file(str(out)) == str(out)
    assert out.parent.is_dir() and not out.exists()  # the folder only; the tool writes
    afile = tmp_path / 'afile'
    afile.write_text('kept')
    for path, message in [
            (tmp_path, f'"{tmp_path}" is a folder; give a file name in it'),
            # not there yet: the tool wrote the report, then failed to open a folder
            (f'{tmp_path}/report/', f'"{tmp_path}/report/" is a folder; give a file name in it'),
            (afile / 'x' / 't.md', f'"{afile}/x/t.md": cannot create the folder {afile}/x '
             f'({afile} is a file); pick a writable path.')]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            arg_types.output_file(str(path))
        assert str(info.value) == message
    assert afile.read_text() == 'kept'


@pytest.mark.parametrize('tool', ['benchmark_ot.py', 'benchmark_pseudo_labels.py',
                                  'benchmark_shift.py'])
def test_benchmarks_check_out_before_measuring(tool, tmp_path, capsys):
    from tool_scripts import load_tool
    module = load_tool(f'tools/{tool}')
    afile = tmp_path / 'afile'
    afile.write_text('')
    parse = getattr(module, 'parse_args', None) or module.main
    with pytest.raises(SystemExit) as info:
        parse(['--out', str(afile / 'table.md')])
    assert info.value.code == 2
    assert (f'argument --out: "{afile}/table.md": {afile} exists and is not a folder; '
            'pick another path.') in capsys.readouterr().err


@pytest.mark.parametrize('kind, text, value', [
    (arg_types.positive_int_list, '1024', [1024]),
    (arg_types.positive_int_list, '1024, 4096', [1024, 4096]),
    (arg_types.non_negative_int_list, '0,1,2', [0, 1, 2]),
])
def test_int_lists_in_range_pass(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize('kind, text, message', [
    (arg_types.positive_int_list, '', 'must be comma-separated integers >= 1, got ""'),
    (arg_types.positive_int_list, ' ', 'must be comma-separated integers >= 1, got " "'),
    (arg_types.positive_int_list, '0', 'must be comma-separated integers >= 1; "0" in "0" '
     'is not one'),
    (arg_types.positive_int_list, '16,abc', 'must be comma-separated integers >= 1; "abc" in '
     '"16,abc" is not one'),
    (arg_types.positive_int_list, '16,,32', 'must be comma-separated integers >= 1; "" in '
     '"16,,32" is not one'),
    (arg_types.positive_int_list, '1.5', 'must be comma-separated integers >= 1; "1.5" in '
     '"1.5" is not one'),
    (arg_types.non_negative_int_list, '0,-1', 'must be comma-separated integers >= 0; "-1" '
     'in "0,-1" is not one'),
])
def test_int_lists_name_the_bad_item(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        kind(text)
    assert str(info.value) == message


def test_int_at_least_takes_its_bound_and_names_it():
    at_least_two = arg_types.int_at_least(2)
    assert at_least_two('2') == 2 and at_least_two('300') == 300
    for text in ('1', '0', '-3', 'two'):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=f'must be an integer >= 2, got "{text}"'):
            at_least_two(text)
