"""baseline_transfer: hard NN as one-hot rows, kNN as its votes; another kind is named."""
import pytest
import torch

from mmseg_saot.models.labelers.baselines import baseline_transfer


def test_nn_rows_are_one_hot_and_knn_rows_are_votes():
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    labels = torch.tensor([0, 1, 255])  # the third source is unlabelled
    tgt = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    probs, mass = baseline_transfer('nn', src, labels, tgt, 3)
    assert probs.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]] and mass.tolist() == [1.0, 1.0]
    probs, mass = baseline_transfer('knn', src, labels, tgt, 3, knn_k=2)
    assert probs.argmax(1).tolist() == [0, 1]
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="kind must be 'nn' or 'knn', got 'ot'"):
        baseline_transfer('ot', src, labels, tgt, 3)
