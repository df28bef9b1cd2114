"""mmseg_saot: SAOT label transfer as an MMSegmentation 1.x plugin.

Importing this package first mends the stack's known breakages
(:mod:`mmseg_saot.utils.compat`), then registers every component into
MMSegmentation's registries, so configs need only::

    custom_imports = dict(imports=['mmseg_saot'], allow_failed_imports=False)
"""
from .utils import compat as _compat

_compat.apply()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration)
from .version import __version__  # noqa: E402

__all__ = ['__version__']
