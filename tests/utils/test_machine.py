import argparse
import os
from unittest import mock

import pytest

from mmseg_saot.utils import machine


def test_cpu_line_names_model_and_usable_cores():
    line = machine.describe_device('cpu')
    name, cores = line.rsplit(', ', 1)
    assert name == machine.cpu_name() and name
    assert cores == f'{len(os.sched_getaffinity(0))} cores'


def test_cpu_name_falls_back_to_platform_without_cpuinfo():
    with mock.patch('builtins.open', side_effect=OSError), \
            mock.patch('platform.processor', return_value=''), \
            mock.patch('platform.machine', return_value='aarch64'):
        assert machine.cpu_name() == 'aarch64'


def test_cuda_line_is_the_gpu_name():
    with mock.patch('torch.cuda.get_device_name', return_value='NVIDIA H100') as get:
        assert machine.describe_device('cuda:1') == 'NVIDIA H100'
    get.assert_called_once_with('cuda:1')


def test_device_option_keeps_cpu_and_names_what_is_wrong():
    assert machine.device_option('cpu') == 'cpu'
    with pytest.raises(argparse.ArgumentTypeError, match='"tpu" is not a device'):
        machine.device_option('tpu')
    with pytest.raises(argparse.ArgumentTypeError, match='only cpu and cuda'):
        machine.device_option('meta')


def test_device_option_checks_the_gpus_this_machine_has():
    with mock.patch('torch.cuda.is_available', return_value=False):
        with pytest.raises(argparse.ArgumentTypeError, match='no usable CUDA GPU.*--device cpu'):
            machine.device_option('cuda')
    with mock.patch('torch.cuda.is_available', return_value=True), \
            mock.patch('torch.cuda.device_count', return_value=2):
        assert machine.device_option('cuda') == 'cuda'
        assert machine.device_option('cuda:1') == 'cuda:1'
        with pytest.raises(argparse.ArgumentTypeError, match='2 CUDA GPU.*cuda:0 to cuda:1'):
            machine.device_option('cuda:2')


def test_device_option_is_a_usage_error_of_the_option():
    parser = argparse.ArgumentParser(prog='tool')
    parser.add_argument('--device', type=machine.device_option)
    with mock.patch('sys.stderr') as stderr, pytest.raises(SystemExit) as exit_info:
        parser.parse_args(['--device', 'tpu'])
    assert exit_info.value.code == 2
    printed = ''.join(call.args[0] for call in stderr.write.call_args_list)
    assert 'argument --device: "tpu" is not a device' in printed
