"""Install the mmseg_saot plugin beside an existing MMSegmentation 1.x."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    """Read ``__version__`` from the package without importing it."""
    for line in (HERE / 'mmseg_saot' / 'version.py').read_text().splitlines():
        if line.startswith('__version__'):
            return line.split('=')[1].strip().strip("'\"")
    raise RuntimeError('mmseg_saot/version.py defines no __version__')


setup(
    name='mmseg_saot',
    version=read_version(),
    description='SAOT: semantically aware optimal transport for dense label '
    'transfer on frozen vision-foundation features, as an MMSegmentation '
    'plugin',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',  # subprocess process_group (utils/child_process.py)
    packages=find_packages(include=['mmseg_saot', 'mmseg_saot.*']),
    # mmcv is deliberately not named: mmseg 1.2.2 needs 2.0 <= mmcv < 2.2 and
    # either mmcv-lite or a compiled mmcv satisfies it; pip must not try to
    # build mmcv from source (see README, "Install").
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'mmengine>=0.10.0',
        'mmsegmentation>=1.2.0',
        'timm>=1.0.20',
        'safetensors>=0.4',
        'numpy',
        'tqdm',
        'ftfy',
        'regex',
        'setuptools<81',  # mmengine 0.10.7 needs pkg_resources
    ],
    extras_require={
        'tests': ['pytest>=8', 'pytest-timeout', 'scipy', 'POT==0.9.5',
                  'geomloss==0.3.1', 'onnx>=1.16', 'onnxruntime'],
    },
    license='Apache-2.0',
    zip_safe=False,
)
