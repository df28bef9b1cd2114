"""ClassBalancedSampler: rare classes drawn more, deterministic, DDP-sharded, refreshed."""
import itertools
import json
import os
import time
from collections import Counter

import pytest

from mmseg_saot.datasets.samplers import ClassBalancedSampler, class_probabilities
from mmseg_saot.utils.errors import UserInputError


class LabelFiles:
    """A dataset stand-in: image i's label file is <root>/labels/<i>.png."""

    def __init__(self, root, size):
        self.data_root, self.size = str(root), size

    def __len__(self):
        return self.size

    def get_data_info(self, index):
        return dict(seg_map_path=os.path.join(self.data_root, 'labels', f'{index}.png'))


def write_stats(root, counts_per_image):
    records = [dict(file=f'labels/{i}.png', counts={str(k): v for k, v in counts.items()})
               for i, counts in enumerate(counts_per_image)]
    (root / 'sample_class_stats.json').write_text(json.dumps(records))


# images 0-8: road only; image 9: road + a little car (the rare class)
COUNTS = [{0: 10000}] * 9 + [{0: 6000, 13: 4000, 255: 500}]


def make_sampler(tmp_path, **kwargs):
    write_stats(tmp_path, COUNTS)
    kwargs.setdefault('seed', 0)
    return ClassBalancedSampler(LabelFiles(tmp_path, len(COUNTS)), min_pixels=100, **kwargs)


def test_class_probabilities_favour_rare_classes():
    probs = class_probabilities({0: 900, 13: 100}, temperature=0.1)
    assert probs[13] > probs[0] and sum(probs.values()) == pytest.approx(1.0)
    flat = class_probabilities({0: 900, 13: 100}, temperature=1e6)
    assert flat[0] == pytest.approx(0.5, abs=1e-4)


def test_rare_class_image_is_drawn_far_more_than_uniformly(tmp_path):
    draws = list(itertools.islice(iter(make_sampler(tmp_path, temperature=0.1)), 2000))
    share = Counter(draws)[9] / len(draws)
    # P(car) = e^(1-f_car)/T / (...) ~ 1 here; plus its share of road draws
    assert share > 0.9
    uniform = list(itertools.islice(iter(make_sampler(tmp_path, temperature=1e6)), 2000))
    assert 0.4 < Counter(uniform)[9] / 2000 < 0.65  # half the draws are car, half road


def test_a_class_listed_with_zero_pixels_is_not_drawn_with_min_pixels_0(tmp_path):
    # count >= 0 held for a listed 0: a class absent from every image got a probability
    # (the largest: it is the rarest) and its "images" were drawn for it
    write_stats(tmp_path, [{0: 10000, 13: 0}] * 4 + [{0: 5000, 5: 5000}])
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, 5), min_pixels=0, seed=0)
    sampler.refresh()
    assert set(sampler.class_probs) == {0, 5}
    assert 13 not in sampler.images_of_class


def test_same_seed_same_sequence(tmp_path):
    first = list(itertools.islice(iter(make_sampler(tmp_path, temperature=1.0)), 50))
    again = list(itertools.islice(iter(make_sampler(tmp_path, temperature=1.0)), 50))
    other = list(itertools.islice(iter(make_sampler(tmp_path, temperature=1.0, seed=1)), 50))
    assert first == again and first != other


def test_ranks_take_interleaved_shares_of_one_sequence(tmp_path):
    whole = list(itertools.islice(iter(make_sampler(tmp_path, temperature=1.0)), 40))
    shards = []
    for rank in (0, 1):
        sampler = make_sampler(tmp_path, temperature=1.0)
        sampler.rank, sampler.world_size = rank, 2
        shards.append(list(itertools.islice(iter(sampler), 20)))
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]


def test_new_statistics_are_read_by_the_next_iterator(tmp_path):
    sampler = make_sampler(tmp_path, temperature=1.0)
    assert 13 in sampler.class_probs or sampler.refresh()
    time.sleep(0.01)
    write_stats(tmp_path, [{0: 10000}] * 10)  # the car is gone
    os.utime(tmp_path / 'sample_class_stats.json')
    draws = list(itertools.islice(iter(sampler), 10))
    assert set(sampler.class_probs) == {0} and len(draws) == 10


def test_statistics_copied_in_with_the_old_modification_time_are_read(tmp_path):
    # only the modification time was compared: a file copied over with cp -p (or
    # rsync -a) of the same time was never read
    sampler = make_sampler(tmp_path, temperature=1.0)
    assert sampler.refresh() and 13 in sampler.class_probs
    path = tmp_path / 'sample_class_stats.json'
    stamp = path.stat().st_mtime_ns
    new = tmp_path / 'new.json'
    new.write_text(json.dumps([dict(file=f'labels/{i}.png', counts={'0': 10000})
                               for i in range(10)]))
    os.utime(new, ns=(stamp, stamp))
    os.replace(new, path)
    assert path.stat().st_mtime_ns == stamp
    assert sampler.refresh() and set(sampler.class_probs) == {0}


def test_images_missing_from_the_statistics_are_named_not_silently_dropped(tmp_path):
    # statistics written before images 10 and 11 were added: they would never be drawn
    write_stats(tmp_path, COUNTS)
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, len(COUNTS) + 2), seed=0,
                                   min_pixels=100)
    with pytest.warns(UserWarning, match=r'2 of the 12 images of LabelFiles have no entry in '
                      r'.*sample_class_stats.json \(.*labels/10.png, .*labels/11.png\): '
                      r'class-balanced sampling never draws them\..*gta5.py ROOT, which '
                      r'always writes it, or cityscapes.py ROOT --class-stats'):
        assert sampler.refresh()
    # statistics of other images altogether: uniform draws, said twice over
    (tmp_path / 'sample_class_stats.json').write_text(json.dumps(
        [dict(file='other/0.png', counts={'0': 5000})]))
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, 4), seed=0)
    with pytest.warns(UserWarning, match='4 of the 4 images .* drawn uniformly instead'):
        assert not sampler.refresh()


@pytest.mark.parametrize('text, problem', [
    # DAFormer's converters write this flat format under the same file name
    (json.dumps([{'file': 'labels/0.png', '0': 5000}]), 'expected a list of'),
    ('{"truncated', 'not JSON'),
])
def test_a_stats_file_of_another_format_is_named_with_the_fix(tmp_path, text, problem):
    # it was a bare KeyError('counts') (or a JSON error without the file's name)
    (tmp_path / 'sample_class_stats.json').write_text(text)
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, 2), seed=0)
    with pytest.raises(UserInputError, match=rf'{tmp_path}/sample_class_stats.json is not a '
                       rf'class-stats file: {problem}.*gta5.py ROOT \(it always writes '
                       rf'it\) or cityscapes.py ROOT --class-stats'):
        next(iter(sampler))


def test_without_statistics_it_draws_uniformly_and_says_so(tmp_path):
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, 5), seed=0)
    with pytest.warns(UserWarning, match='no usable class statistics'):
        draws = list(itertools.islice(iter(sampler), 10))
    assert sorted(draws[:5]) == [0, 1, 2, 3, 4]


def test_statistics_the_hook_is_about_to_write_are_a_note_not_a_warning(tmp_path,
                                                                          monkeypatch):
    import warnings

    from mmseg_saot.datasets.samplers import class_balanced_sampler
    dataset = LabelFiles(tmp_path, 5)
    dataset.cache = type('Cache', (), {'root': str(tmp_path / 'pseudo_labels')})()
    notes = []
    monkeypatch.setattr(class_balanced_sampler, 'print_log',
                        lambda message, **kwargs: notes.append(message))
    sampler = ClassBalancedSampler(dataset, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the loop draws before the hook labels: no warning
        draws = list(itertools.islice(iter(sampler), 10))
    assert sorted(draws[:5]) == [0, 1, 2, 3, 4]
    assert notes == [f'ClassBalancedSampler: {tmp_path}/pseudo_labels/sample_class_stats.json '
                     'is written with the pseudo-labels; class-balanced sampling starts when '
                     'they are.']
    # another statistics file that is missing is the user's: a warning
    sampler = ClassBalancedSampler(dataset, seed=0, stats_file=str(tmp_path / 'mine.json'))
    with pytest.warns(UserWarning, match='no usable class statistics'):
        list(itertools.islice(iter(sampler), 1))


def test_bad_temperature_is_refused(tmp_path):
    with pytest.raises(ValueError, match='temperature'):
        ClassBalancedSampler(LabelFiles(tmp_path, 1), temperature=0)


@pytest.mark.parametrize('option, value, message', [
    ('temperature', 'abc', "temperature must be a number > 0, got 'abc'"),
    ('temperature', 0.0, 'temperature must be a number > 0, got 0.0'),
    ('min_pixels', -1, 'min_pixels must be an integer >= 0, got -1'),
])
def test_bad_options_are_named(tmp_path, option, value, message):
    from mmseg_saot.utils.errors import ConfigError
    with pytest.raises(ConfigError, match=f'^ClassBalancedSampler: {message}.$'):
        ClassBalancedSampler(LabelFiles(tmp_path, 2), **{option: value})


def test_an_empty_dataset_is_an_error_not_an_endless_loop(tmp_path):
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, 0), seed=0)
    with pytest.raises(UserInputError, match=f'^ClassBalancedSampler: its dataset '
                       f'\\(LabelFiles under {tmp_path}\\) has no samples, so there is '
                       'nothing to draw'):
        next(iter(sampler))


def test_statistics_where_no_class_reaches_min_pixels_say_so_with_the_fix(tmp_path):
    # it warned "no usable class statistics ... yet; ... until they are written": the
    # file was there and valid, and no wait would help
    write_stats(tmp_path, COUNTS)
    sampler = ClassBalancedSampler(LabelFiles(tmp_path, len(COUNTS)), seed=0,
                                   min_pixels=20000)
    with pytest.warns(UserWarning) as record:
        draws = list(itertools.islice(iter(sampler), 10))
    assert sorted(draws) == list(range(10))  # uniform
    (message,) = [str(w.message) for w in record]
    assert message == (
        f'ClassBalancedSampler: no class covers min_pixels=20000 pixels in any image of '
        f'{tmp_path}/sample_class_stats.json (the most any class has in one image is '
        '10000), so images are drawn uniformly; set min_pixels below that.')


def test_the_default_statistics_are_the_wrapped_targets(tmp_path):
    # a wrapper without a data_root of its own (SourceTargetDataset around a labelled
    # target, a RepeatDataset) looked for sample_class_stats.json in the working folder
    class Wrapper:
        def __init__(self, dataset):
            self.dataset = dataset

        def __len__(self):
            return len(self.dataset)

        def get_data_info(self, index):
            return self.dataset.get_data_info(index)

    write_stats(tmp_path, COUNTS)
    sampler = ClassBalancedSampler(Wrapper(Wrapper(LabelFiles(tmp_path, len(COUNTS)))),
                                   seed=0, min_pixels=100, temperature=0.1)
    assert sampler.stats_file == str(tmp_path / 'sample_class_stats.json')
    draws = list(itertools.islice(iter(sampler), 200))
    assert Counter(draws)[9] > 150
