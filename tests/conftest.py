"""Shared test setup: the plugin is imported (and the stack mended) first."""
import os
import sys
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

import mmseg_saot  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(min(2, os.cpu_count() or 1))
init_default_scope('mmseg')


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def python() -> str:
    """The interpreter running the tests, for CLI subprocesses."""
    return sys.executable


@pytest.fixture(autouse=True)
def forget_new_loggers():
    """Drop the MMEngine loggers a test creates in-process (a Runner makes one, current
    from then on): their handlers write to that test's captured stderr, which is closed
    when the next test logs through ``print_log(logger='current')`` (a ``--- Logging
    error ---`` in that test's output, which then depends on the order of the tests)."""
    from mmengine.logging import MMLogger
    before = set(MMLogger._instance_dict)
    yield
    for name in set(MMLogger._instance_dict) - before:
        logger = MMLogger._instance_dict.pop(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
