"""SAOTPseudoLabelHook refuses a label space other than the decode head's."""
from types import SimpleNamespace

import pytest
from torch import nn

from mmseg_saot.engine.hooks import SAOTPseudoLabelHook
from mmseg_saot.utils.errors import UserInputError


def test_num_classes_must_match_the_decode_head():
    hook = SAOTPseudoLabelHook(source=dict(type='GTA5Dataset'),
                               labeler=dict(type='SAOTLabeler'), num_classes=19)
    model = nn.Module()
    model.decode_head = SimpleNamespace(num_classes=21)
    with pytest.raises(UserInputError, match='num_classes=21'):
        hook.run(model, dataset=None)
