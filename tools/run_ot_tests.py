"""Run the OT engine's tests where only torch (and pytest) are installed.

``mmseg_saot.ot`` is pure torch; the package ``__init__`` and the suite's
``conftest.py`` import mmseg and mmengine. This script imports the ``ot``
subpackage alone and runs pytest without the conftest, e.g. on a GPU machine
that has torch but not the MMSeg stack::

    python tools/run_ot_tests.py tests/ot -q
"""
import importlib
import os
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_ot_alone():
    """Register a bare ``mmseg_saot`` package, then import ``mmseg_saot.ot``."""
    if 'mmseg_saot' not in sys.modules:
        package = types.ModuleType('mmseg_saot')
        package.__path__ = [os.path.join(ROOT, 'mmseg_saot')]
        sys.modules['mmseg_saot'] = package
    return importlib.import_module('mmseg_saot.ot')


if __name__ == '__main__':
    import_ot_alone()
    sys.exit(pytest.main(['--noconftest', '-p', 'no:cacheprovider', *sys.argv[1:]]))
