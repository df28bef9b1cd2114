import os
from unittest import mock

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

