"""Readable errors for missing or misnamed dataset folders.

A missing dataset must stop a run with one message that names the folder,
the expected layout and the converter to run, not with a traceback from
inside MMEngine. :func:`check_data_layout` checks every dataloader of a
config before anything is built; :func:`check_dataset_folders` checks one
dataset and is also called by the plugin's own dataset classes.
"""
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Tuple

from mmseg_saot.utils.config_types import has_type, type_name
from mmseg_saot.utils.errors import UserInputError

# dataset type -> (expected layout, how to prepare it)
PREPARATION: Dict[str, tuple] = {
    'GTA5Dataset': (
        'data/gta5/images/*.png and data/gta5/labels/*_labelTrainIds.png',
        'download GTA5 (images + labels) into data/gta5, then run '
        '`python tools/dataset_converters/gta5.py data/gta5`'),
    'CityscapesDataset': (
        'data/cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and '
        'data/cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png',
        'download leftImg8bit_trainvaltest and gtFine_trainvaltest into '
        'data/cityscapes, then run '
        '`python tools/dataset_converters/cityscapes.py data/cityscapes`'),
    'PascalVOCDataset': (
        'data/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,'
        'SegmentationClassAug,ImageSets/Segmentation/{train,val,aug,trainaug}.txt}',
        'extract VOCtrainval_11-May-2012 into data/VOCdevkit and SBD into '
        'data/VOCdevkit/VOCaug, then run `python '
        'tools/dataset_converters/voc_aug.py data/VOCdevkit '
        'data/VOCdevkit/VOCaug`'),
}
DEMO_HINT = 'for the embedded demo data run `make demo-data`'
# the data_root each layout above is written for (the shipped configs'); another root
# given in the config is put in its place in the message
LAYOUT_ROOTS = {'GTA5Dataset': 'data/gta5', 'CityscapesDataset': 'data/cityscapes',
                'PascalVOCDataset': 'data/VOCdevkit/VOC2012'}


class DataLayoutError(UserInputError, FileNotFoundError):
    """A dataset folder or file is missing; the message says how to fix it."""


def _advice(dataset_type: str, data_root: str, keys: List[str]) -> str:
    layout, preparation = PREPARATION.get(
        dataset_type, ('the folders named in the config', 'see README.md'))
    default_root = LAYOUT_ROOTS.get(dataset_type)
    given_root = str(data_root or '').rstrip('/')
    if default_root and given_root and given_root != default_root:
        layout = layout.replace(f'{default_root}/', f'{given_root}/')
        preparation = preparation.replace(default_root, given_root)
        if dataset_type == 'PascalVOCDataset':  # its preparation names the devkit above
            preparation = preparation.replace(osp.dirname(default_root),
                                              osp.dirname(given_root))
    # make_demo_data.py writes <out>/gta5 and <out>/cityscapes, out = data/demo by default
    # (a root that merely contains "demo", as /home/demo/..., is no demo data)
    if given_root and osp.basename(osp.dirname(osp.normpath(given_root))) == 'demo':
        preparation = DEMO_HINT
    # every entry that names the folder, or the run would stop at the next one
    elsewhere = ('--cfg-options ' + ' '.join(f'{key}.data_root=/my/data' for key in keys)
                 if keys else 'set the data_root of this dataset in the config')
    return (f'Expected layout: {layout}.\nTo prepare it: {preparation}.\n'
            f'Or point the config elsewhere: {elsewhere}')


def _has_file_with_suffix(folder: str, suffix: str) -> bool:
    # into symlinked folders too, as MMSeg's listing goes (a tree of linked cities)
    for _, _, files in os.walk(folder, followlinks=True):
        if any(name.endswith(suffix) for name in files):
            return True
    return False


def _split_file_problem(path: str) -> Optional[str]:
    """What MMSeg would trip on in a split file (one image name per line), or None: it
    is missing, it lists no image (training then waits forever for a first sample), or
    it has a blank line (read as an image named "", at the end too), or it starts with a
    byte order mark (read into the first name)."""
    if not osp.isfile(path):
        return f'split file "{path}" does not exist'
    with open(path, encoding='utf-8', errors='replace') as f:
        lines = f.read().splitlines()
    if not any(line.strip() for line in lines):
        return f'split file "{path}" lists no image (it is empty)'
    if lines[0].startswith('\ufeff'):
        return (f'split file "{path}" starts with a byte order mark, which MMSeg reads as part '
                'of the first name; save it as UTF-8 without BOM')
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        shown = ', '.join(map(str, blank[:5])) + (', ...' if len(blank) > 5 else '')
        return (f'split file "{path}" has blank lines ({shown}), which MMSeg reads as images '
                'named ""; remove them')
    return None


def check_dataset_folders(dataset_type: str,
                          data_root: Optional[str],
                          data_prefix: dict,
                          img_suffix: str = '',
                          ann_file: Optional[str] = None,
                          labels_required: bool = True,
                          key: Optional[str] = None,
                          seg_map_suffix: Optional[str] = None,
                          advice_root: Optional[str] = None) -> None:
    """Raise :class:`DataLayoutError` if a dataset's folders are unusable.

    Args:
        dataset_type (str): registered dataset class name, for the advice.
        data_root (str, optional): the dataset root.
        data_prefix (dict): ``img_path`` / ``seg_map_path`` (relative to the
            root unless absolute, as MMSeg resolves them).
        img_suffix (str): suffix the images must have.
        ann_file (str, optional): split file, relative to the root.
        labels_required (bool): whether the ``seg_map_path`` folder must exist (False
            where nothing reads the label maps: see :func:`loads_labels`).
        key (str, optional): the dataset's config key (``test_dataloader.dataset``),
            named in the advice.
        seg_map_suffix (str, optional): suffix of the label maps; where labels are
            required and no split file lists the samples, the ``seg_map_path`` folder
            must hold one (None: not checked).
        advice_root (str, optional): the root the advice is written for, when
            ``data_root`` is None because ``data_prefix`` is already joined to it (as
            MMEngine does before ``load_data_list``); default ``data_root``.
    """
    problem = _folder_problem(data_root or '', data_prefix, img_suffix, ann_file,
                              labels_required, seg_map_suffix)
    if problem:
        raise DataLayoutError(_layout_message(dataset_type, advice_root or data_root or '',
                                              problem, [key]))


def _layout_message(dataset_type: str, root: str, problem: str,
                    keys: List[Optional[str]]) -> str:
    named = [key for key in keys if key]
    where = f' ({", ".join(named)})' if named else ''
    return (f'{dataset_type}{where}: {problem}.\n'
            + _advice(dataset_type, root, named))


def _folder_problem(root: str, data_prefix: dict, img_suffix: str,
                    ann_file: Optional[str], labels_required: bool,
                    seg_map_suffix: Optional[str] = None) -> Optional[str]:
    """What is missing of a dataset's folders (see :func:`check_dataset_folders`)."""

    def resolve(path: str) -> str:
        return path if osp.isabs(path) or not root else osp.join(root, path)

    problem = None
    if root and not osp.isdir(root):
        relative = '' if osp.isabs(root) else f' (under the current folder {os.getcwd()})'
        problem = f'dataset root "{root}"{relative} does not exist'
    else:
        for name in ('img_path', 'seg_map_path') if labels_required else ('img_path',):
            folder = data_prefix.get(name)
            if folder is not None and not osp.isdir(resolve(folder)):
                problem = f'folder "{resolve(folder)}" ({name}) does not exist'
                break
        if problem is None and ann_file:
            problem = _split_file_problem(resolve(ann_file))
        img_dir = data_prefix.get('img_path')
        if (problem is None and img_dir is not None and not ann_file
                and not _has_file_with_suffix(resolve(img_dir), img_suffix)):
            problem = (f'no "*{img_suffix}" image under "{resolve(img_dir)}"')
        seg_dir = data_prefix.get('seg_map_path')
        # (images and labels are matched by name: a folder of unconverted labels, e.g.
        # Cityscapes' *_gtFine_labelIds.png only, would stop the run at its first sample)
        if (problem is None and labels_required and seg_dir is not None and not ann_file
                and seg_map_suffix is not None
                and not _has_file_with_suffix(resolve(seg_dir), seg_map_suffix)):
            problem = (f'no "*{seg_map_suffix}" label map under "{resolve(seg_dir)}" '
                       '(labels not converted yet?)')
    return problem


def leaf_datasets(dataset_cfg: dict) -> Iterator[dict]:
    """Yield the concrete dataset configs inside wrappers (Concat, Repeat, UDA pairs)."""
    for _, leaf in leaf_dataset_keys(dataset_cfg, ''):
        yield leaf


def dataset_keys(dataset_cfg: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, config)`` of ``dataset_cfg`` (whose own key is ``key``) and of every
    dataset inside it, wrappers before what they wrap."""
    yield key, dataset_cfg
    for child_key, child in _wrapped(dataset_cfg, key):
        yield from dataset_keys(child, child_key)


def pseudo_label_dirs(dataset_cfg: dict, key: str) -> Iterator[Tuple[str, str]]:
    """``(config key, folder)`` of each ``PseudoLabelDataset`` inside ``dataset_cfg``
    (whose own key is ``key``), through Concat, UDA-pair and other wrappers."""
    for node_key, node in dataset_keys(dataset_cfg, key):
        if has_type(node, 'PseudoLabelDataset'):
            yield f'{node_key}.pseudo_label_dir', node.get('pseudo_label_dir')


def leaf_dataset_keys(dataset_cfg: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, config)`` of each concrete dataset inside ``dataset_cfg`` (whose own
    key is ``key``): ``train_dataloader.dataset.target.dataset`` for the Cityscapes set
    that a PseudoLabelDataset wraps in a SourceTargetDataset."""
    for node_key, node in dataset_keys(dataset_cfg, key):
        if not _wrapped(node, node_key):
            yield node_key, node


def _wrapped(dataset_cfg: dict, key: str) -> List[Tuple[str, dict]]:
    """The datasets a wrapper config holds (Concat: ``datasets``; SourceTargetDataset:
    ``source`` and ``target``; Repeat, PseudoLabelDataset: ``dataset``), with their keys;
    empty for a concrete dataset."""
    if 'datasets' in dataset_cfg:
        return [(f'{key}.datasets.{i}', child) for i, child in enumerate(dataset_cfg['datasets'])]
    if 'source' in dataset_cfg and 'target' in dataset_cfg:  # SourceTargetDataset
        return [(f'{key}.source', dataset_cfg['source']), (f'{key}.target', dataset_cfg['target'])]
    if 'dataset' in dataset_cfg:
        return [(f'{key}.dataset', dataset_cfg['dataset'])]
    return []


def loads_labels(dataset_cfg: dict) -> bool:
    """Whether a dataset's own pipeline reads its label maps (holds a ``LoadAnnotations``
    transform); True where the pipeline is not a list of transform configs.

    Images without labels are a normal input where nothing reads labels: the target
    images that a PseudoLabelDataset wraps (their labels only score the pseudo-labels),
    a test set predicted with ``format_only=True``.
    """
    if not isinstance(dataset_cfg.get('pipeline'), (list, tuple)):
        return True
    return pipeline_step(dataset_cfg, 'LoadAnnotations') is not None


def pipeline_step(dataset_cfg: dict, name: str) -> Optional[dict]:
    """The first transform config of a dataset's pipeline whose type is ``name`` (with or
    without a scope prefix such as ``mmseg.``), also inside wrappers such as
    ``TestTimeAug`` (``transforms``: lists of transforms), or None."""
    return _find_step(dataset_cfg.get('pipeline'), name)


def _find_step(steps, name: str) -> Optional[dict]:
    for step in steps if isinstance(steps, (list, tuple)) else ():
        if isinstance(step, (list, tuple)):  # a TestTimeAug branch
            found = _find_step(step, name)
        elif isinstance(step, dict):
            found = (step if type_name(step.get('type', '')) == name
                     else _find_step(step.get('transforms'), name))
        else:
            found = None
        if found is not None:
            return found
    return None


SPLITS = ('train', 'val', 'test')


def dataset_roots(cfg, splits=SPLITS) -> Iterator[Tuple[str, str, dict]]:
    """``(split, config key, dataset config)`` of each dataloader of ``splits`` in a
    config, plus the pseudo-labelling hook's labelled source set (with ``'train'``)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and 'dataset' in loader:
            yield split, f'{split}_dataloader.dataset', loader['dataset']
        if split == 'train':
            for index, hook in enumerate(cfg.get('custom_hooks', None) or []):
                if isinstance(hook.get('source'), dict):
                    yield split, f'custom_hooks.{index}.source', hook['source']


# Defaults of the dataset classes this check knows about.
_IMG_SUFFIX = {'GTA5Dataset': '.png', 'CityscapesDataset': '_leftImg8bit.png',
               'PascalVOCDataset': '.jpg'}
_SEG_MAP_SUFFIX = {'GTA5Dataset': '_labelTrainIds.png',
                   'CityscapesDataset': '_gtFine_labelTrainIds.png', 'PascalVOCDataset': '.png'}


def check_data_layout(cfg, splits=SPLITS) -> None:
    """Check the dataset folders of the dataloaders of ``splits`` in an MMEngine config.

    Args:
        cfg (mmengine.Config): the full config.
        splits: the dataloaders a tool builds (``tools/test.py``: ``('test',)``; training
            does not need the test set's folders, testing not the training sets').

    Raises:
        DataLayoutError: naming every missing folder (each with its layout and fix),
            so that one run of a tool lists all the datasets to prepare.
    """
    # one entry per missing folder, with every config key that names it
    problems: Dict[Tuple[str, str, str], List[str]] = {}
    for _, root_key, root in dataset_roots(cfg, splits):
        for key, dataset in leaf_dataset_keys(root, root_key):
            dataset_type = type_name(dataset.get('type', ''))
            data_root = dataset.get('data_root') or ''
            problem = _folder_problem(
                data_root, dict(dataset.get('data_prefix', {})),
                dataset.get('img_suffix', _IMG_SUFFIX.get(dataset_type, '')),
                dataset.get('ann_file'), loads_labels(dataset),
                dataset.get('seg_map_suffix', _SEG_MAP_SUFFIX.get(dataset_type)))
            if problem:
                problems.setdefault((dataset_type, data_root, problem), []).append(key)
    if problems:
        raise DataLayoutError('\n\n'.join(
            _layout_message(dataset_type, data_root, problem, keys)
            for (dataset_type, data_root, problem), keys in problems.items()))
