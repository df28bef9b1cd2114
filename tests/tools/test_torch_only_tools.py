"""The benchmarks a GPU machine runs with torch alone (no mmengine, mmseg or mmcv; see
tools/device_check_fused.sh) start without the MMSeg stack."""
import subprocess

import pytest
from tool_scripts import REPO_ROOT

# Importing any of these raises ImportError, as on a machine without them.
WITHOUT_THE_STACK = '''
import runpy, sys
for name in ('mmengine', 'mmseg', 'mmcv'):
    sys.modules[name] = None
sys.argv = [sys.argv[1], '--help']
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.parametrize('tool', ['benchmark_ot.py', 'benchmark_pseudo_labels.py',
                                  'tune_fused_blocks.py'])
def test_the_torch_only_benchmarks_start_without_mmengine(python, tool):
    # their Ctrl-C handling was imported from utils/cli.py, which imports mmengine:
    # "No module named 'mmengine.logging'" before the first line of work
    result = subprocess.run([python, '-c', WITHOUT_THE_STACK, str(REPO_ROOT / 'tools' / tool)],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f'usage: {tool}')
