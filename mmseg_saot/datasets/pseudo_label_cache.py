"""On-disk pseudo-label cache: one label PNG and one confidence PNG per target image.

Layout under ``root`` (``<work_dir>/pseudo_labels`` by default)::

    labels/<key>.png         uint8 train ids, 255 = ignore (dropped or no mass)
    confidence/<key>.png     uint8, round(255 * confidence)
    labeler.pth              the fitted SAOTLabeler state (metric, prototypes, means)
    manifest.json            fingerprint, completeness, counts, class histogram
    sample_class_stats.json  per-image class pixel counts (class-balanced sampling)

``key`` is the image path relative to the target dataset's image folder, without its
extension. Every file is written to a temporary name in the same folder and renamed
into place (``os.replace`` is atomic on POSIX), so a killed run leaves either a whole
file or none (and a temporary, deleted when the cache is opened again); an image counts
as done once both of its PNGs exist. A cache whose
fingerprint differs from the current run's is never overwritten: it is moved aside
to ``<root>.stale-<hash>``.
"""
import hashlib
import json
import logging
import os
import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from mmseg_saot.utils.atomic import TEMPORARY_NAME, atomic_write_bytes
from mmseg_saot.utils.errors import UserInputError, error_reason
from mmseg_saot.utils.paths import ensure_folder, unused_path
from .integrity import read_label_map

MANIFEST = 'manifest.json'
LABELER_STATE = 'labeler.pth'
#: What a cache folder holds (besides the manifest): a folder of only these is one.
_CACHE_ENTRIES = frozenset({'labels', 'confidence', LABELER_STATE,
                            'sample_class_stats.json'})
STATE_NEW, STATE_PARTIAL, STATE_COMPLETE = 'new', 'partial', 'complete'


def fingerprint_hash(fingerprint: Dict[str, Any]) -> str:
    """sha256 of a JSON-serialisable fingerprint (keys sorted)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _png_bytes(array: np.ndarray) -> bytes:
    import io
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format='PNG', compress_level=6)
    return buffer.getvalue()


def changed_entries(old: Optional[Dict[str, Any]], new: Dict[str, Any]) -> str:
    """The fingerprint entries that differ between ``old`` and ``new``, comma-separated
    ('' if ``old`` is not a fingerprint, e.g. a folder without a manifest)."""
    if not isinstance(old, dict):
        return ''
    return ', '.join(key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key))


class PseudoLabelCache:
    """Reads and writes the pseudo-label cache at ``root`` (see the module doc).

    Args:
        root: the cache folder.
        option: where ``root`` came from, named when its folder cannot be made.
    """

    def __init__(self, root: str, option: str = 'the pseudo-label cache') -> None:
        self.root = root
        self.option = option

    def label_path(self, key: str) -> str:
        return osp.join(self.root, 'labels', key + '.png')

    def confidence_path(self, key: str) -> str:
        return osp.join(self.root, 'confidence', key + '.png')

    @property
    def labeler_path(self) -> str:
        return osp.join(self.root, LABELER_STATE)

    @property
    def manifest_path(self) -> str:
        return osp.join(self.root, MANIFEST)

    def has(self, key: str) -> bool:
        """Whether both PNGs of ``key`` are in place."""
        return osp.isfile(self.label_path(key)) and osp.isfile(self.confidence_path(key))

    def write(self, key: str, labels: np.ndarray, confidence: np.ndarray) -> None:
        """Store one image's ``(H, W)`` uint8 labels and uint8 confidence, atomically.

        The confidence goes first: the label file completes the pair.
        """
        if labels.dtype != np.uint8 or confidence.dtype != np.uint8:
            raise TypeError('PseudoLabelCache.write expects uint8 labels and confidence.')
        if labels.shape != confidence.shape:
            raise ValueError(f'labels {labels.shape} and confidence {confidence.shape} differ.')
        atomic_write_bytes(self.confidence_path(key), _png_bytes(confidence))
        atomic_write_bytes(self.label_path(key), _png_bytes(labels))

    def read_labels(self, key: str) -> np.ndarray:
        """The ``(H, W)`` labels of ``key``; an unreadable file is a UserInputError that
        names it and the fix (see :meth:`unreadable_message`)."""
        try:
            return read_label_map(self.label_path(key))
        except Exception as err:  # any decoder failure: the file is the problem
            raise UserInputError(self.unreadable_message(
                key, [self.label_path(key)], err)) from None

    def unreadable_message(self, key: str, broken: List[str], err: Exception,
                           image: Optional[str] = None) -> str:
        """Why ``broken`` files of ``key`` cannot be used and how to mend the cache.

        Args:
            key: the image's cache key.
            broken: the unreadable files among its label and confidence PNGs.
            err: the reader's error.
            image: the target image, named when given.
        """
        of_image = f' of {image}' if image else ''
        return (f'the pseudo-label cache file {" and ".join(broken)}{of_image} cannot be '
                f'read ({error_reason(err)}). Delete {self.label_path(key)} and '
                f'{self.confidence_path(key)} and run the same command again: '
                'SAOTPseudoLabelHook labels the missing image again.')

    def read_manifest(self) -> Optional[Dict[str, Any]]:
        """The manifest, or None when there is none (or it is unreadable, or not a JSON
        object: nothing this cache wrote)."""
        try:
            with open(self.manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def write_manifest(self, manifest: Dict[str, Any]) -> None:
        data = json.dumps(manifest, indent=2, sort_keys=True, default=str) + '\n'
        atomic_write_bytes(self.manifest_path, data.encode())

    def _check_is_a_cache(self) -> None:
        """Raise a UserInputError unless the non-empty folder ``root`` looks like a cache
        (a manifest, or only what a cache writes): moving aside a folder such as a
        dataset root or a work_dir would break what reads it."""
        found = sorted(name for name in os.listdir(self.root)
                       if not TEMPORARY_NAME.fullmatch(name))  # ours, cut by a kill
        if MANIFEST in found or set(found) <= _CACHE_ENTRIES:
            return
        listed = ', '.join(found[:4]) + (', ...' if len(found) > 4 else '')
        raise UserInputError(
            f'{self.option}: {self.root} holds files but is no pseudo-label cache (no '
            f'{MANIFEST}; it holds {listed}), so it is left as it is. Point '
            f'{self.option} at a new or empty folder.')

    def _remove_cut_temporaries(self) -> None:
        """Delete the temporaries of writes a killed run cut short
        (:data:`~mmseg_saot.utils.atomic.TEMPORARY_NAME`): their PNG was never in place,
        so the image is labelled again. Called before any rank writes."""
        for folder, _, names in os.walk(self.root):
            for name in names:
                if TEMPORARY_NAME.fullmatch(name):
                    os.remove(osp.join(folder, name))

    def state(self, config_hash: str) -> str:
        """``'complete'``, ``'partial'`` (same fingerprint, unfinished) or ``'new'``."""
        manifest = self.read_manifest()
        if manifest is None or manifest.get('config_hash') != config_hash:
            return STATE_NEW
        return STATE_COMPLETE if manifest.get('complete') else STATE_PARTIAL

    def open(self, fingerprint: Dict[str, Any],
             stamps: Optional[Dict[str, str]] = None) -> str:
        """Prepare the cache for ``fingerprint``; returns its :meth:`state`.

        A cache written for another fingerprint (or one whose manifest is damaged or
        gone) is moved aside to ``<root>.stale-<hash>``, never deleted; a folder that
        is no cache is refused (:class:`UserInputError`). A new cache gets an incomplete
        manifest so that an interrupted run is recognised as partial.

        Args:
            fingerprint: what produced the labels (see ``make_fingerprint``).
            stamps: ``{key: stamp}`` of the target images now (size and modification
                time); kept in the manifest. The labels of an image whose stamp differs
                from the one kept are deleted (the image is edited or replaced): it is
                labelled again, alone, and the cache is partial until it is.
        """
        config_hash = fingerprint_hash(fingerprint)
        state = self.state(config_hash)
        if state != STATE_NEW:
            self._remove_cut_temporaries()
            if stamps is not None:
                state = self._forget_changed_images(stamps, state)
            return state
        if osp.isdir(self.root) and os.listdir(self.root):
            self._check_is_a_cache()
            manifest = self.read_manifest() or {}
            old = str(manifest.get('config_hash') or 'unknown')[:8]
            changed = changed_entries(manifest.get('fingerprint'), fingerprint)
            moved = unused_path(f'{self.root.rstrip(os.sep)}.stale-{old}')
            os.replace(self.root, moved)
            print_log(f'{self.root} held pseudo-labels of other settings (config hash {old}'
                      f'{f"; changed: {changed}" if changed else ""}); moved them to {moved} '
                      'and labelling again.', logger='current', level=logging.WARNING)
        ensure_folder(self.root, self.option)
        manifest = dict(config_hash=config_hash, complete=False, fingerprint=fingerprint)
        if stamps is not None:
            manifest['image_stamps'] = dict(stamps)
        self.write_manifest(manifest)
        return STATE_NEW

    def _forget_changed_images(self, stamps: Dict[str, str], state: str) -> str:
        """Delete the labels of the images whose stamp changed since the manifest's, then
        record ``stamps``; returns the state (partial if any image was changed)."""
        manifest = self.read_manifest()
        kept = manifest.get('image_stamps')
        if not isinstance(kept, dict):
            kept = {}
        changed = [key for key, stamp in stamps.items()
                   if key in kept and kept[key] != stamp and self.has(key)]
        for key in changed:  # the label completes the pair: it goes first
            for path in (self.label_path(key), self.confidence_path(key)):
                if osp.exists(path):
                    os.remove(path)
        if changed:
            print_log(f'{len(changed)} target image(s) changed since they were labelled '
                      f'(size or modification time), e.g. {changed[0]}: labelling '
                      f'{"it" if len(changed) == 1 else "them"} again; the other labels '
                      f'in {self.root} are kept.', logger='current', level=logging.WARNING)
        if changed or kept != stamps:
            manifest.update(image_stamps=dict(stamps),
                            complete=bool(manifest.get('complete')) and not changed)
            self.write_manifest(manifest)
        return STATE_PARTIAL if changed else state
