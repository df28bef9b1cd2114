"""PseudoLabelScore: ground truth outside the label space is named, not a numpy error."""
import numpy as np
import pytest

from mmseg_saot.engine.pseudo_labels.scoring import PseudoLabelScore


def test_counts_rows_of_truth_and_columns_of_predictions_with_ignore_last():
    score = PseudoLabelScore(3)
    gt = np.array([[0, 1], [2, 255]], np.uint8)
    pred = np.array([[0, 2], [255, 1]], np.uint8)
    expected = np.zeros((3, 4), np.int64)
    expected[0, 0] = expected[1, 2] = expected[2, 3] = 1
    np.testing.assert_array_equal(score.confusion(pred, gt), expected)


def test_ground_truth_beyond_the_classes_is_named_with_the_likely_cause():
    # "cannot reshape array of size 524 into shape (19,20)": raw Cityscapes ids (26 for
    # car) where train ids were expected
    gt = np.full((4, 5), 3, np.uint8)
    gt[0, 0] = 26
    with pytest.raises(ValueError, match=(
            r'ground truth holds 26, not a class in \[0, 19\) nor ignore_index=255: label '
            'ids rather than train ids')):
        PseudoLabelScore(19).add(gt, gt, gt)


def test_colour_ground_truth_is_named_as_such_not_as_a_size_mismatch():
    score = PseudoLabelScore(num_classes=3)
    labels = np.zeros((4, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r'ground truth of shape \(4, 5, 3\) is a colour image'):
        score.add(labels, labels, np.zeros((4, 5, 3), dtype=np.uint8))


def test_no_kept_pixel_gives_a_null_kept_miou_not_nan():
    # a confidence threshold above 1 keeps nothing: json.dump wrote NaN, which strict
    # JSON readers reject, and the table printed nan after a numpy warning
    import json
    import warnings

    from mmseg_saot.engine.pseudo_labels.scoring import format_table
    score = PseudoLabelScore(num_classes=2)
    gt = np.array([[0, 1], [1, 0]], np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        score.add(np.full((2, 2), 255, np.uint8), gt, gt)
        summary = score.summary(['road', 'car'])
    assert summary['miou'] == 100.0 and summary['miou_kept'] is None
    json.loads(json.dumps(summary), parse_constant=lambda name: pytest.fail(name))
    row = [line for line in format_table({'saot': summary}, ['road', 'car']).splitlines()
           if line.startswith('mIoU (kept)')]
    assert row[0].split() == ['mIoU', '(kept)', '-']


def test_a_filter_that_drops_a_whole_class_does_not_raise_the_kept_miou():
    # the kept mean skipped classes left without a kept pixel: dropping class 1 entirely
    # scored 100 against 65 for keeping everything, from the same raw labels
    gt = np.array([[0, 0, 0, 0, 1, 1]], np.uint8)
    raw = np.array([[0, 0, 0, 0, 1, 0]], np.uint8)
    keep_all, drop_class = PseudoLabelScore(2), PseudoLabelScore(2)
    keep_all.add(raw, raw, gt)
    drop_class.add(np.array([[0, 0, 0, 0, 255, 255]], np.uint8), raw, gt)
    kept_all = keep_all.summary(['road', 'car'])['miou_kept']
    kept_dropped = drop_class.summary(['road', 'car'])['miou_kept']
    assert kept_all == pytest.approx(65.0) and kept_dropped == pytest.approx(50.0)
