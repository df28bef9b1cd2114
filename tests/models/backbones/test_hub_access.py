"""hub_access: an unreachable hub is named at once instead of after timm's retries."""
import socket
import time

import huggingface_hub
import pytest
import timm

from mmseg_saot.models.backbones import DINOv2Backbone
from mmseg_saot.models.backbones.hub_access import PROXY_VARIABLES, hub_unreachable
from mmseg_saot.utils.errors import ConfigError, WeightsError

MODEL = 'vit_base_patch14_reg4_dinov2'  # weights on the hub, not in any test cache


@pytest.fixture
def no_network(monkeypatch):
    """The hub's host refuses connections; timm must not be asked to download."""
    tries = []

    def refuse(address, timeout=None):
        tries.append(address)
        raise ConnectionRefusedError(111, 'Connection refused')

    def create_model(*args, **kwargs):
        raise AssertionError('timm was asked to download')

    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(timm, 'create_model', create_model)
    monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache',
                        lambda repo, name: None)  # nothing in the Hugging Face cache
    for name in PROXY_VARIABLES + ('HF_HUB_OFFLINE',):
        monkeypatch.delenv(name, raising=False)
    return tries


def test_pretrained_weights_from_an_unreachable_hub_fail_at_once(no_network):
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=f'could not fetch pretrained weights for "{MODEL}" '
                       'from the timm/Hugging Face hub \\(huggingface.co is unreachable '
                       '\\(ConnectionRefusedError: .*pass a local file'):
        DINOv2Backbone(model_name=MODEL, pretrained=True)  # stubbed: no download
    assert time.perf_counter() - start < 5 and no_network == [('huggingface.co', 443)]


def test_a_proxy_or_offline_mode_is_left_to_timm(no_network, monkeypatch):
    monkeypatch.setenv('HTTPS_PROXY', 'http://proxy:3128')  # the only way out may be it
    assert hub_unreachable(MODEL) is None
    monkeypatch.delenv('HTTPS_PROXY')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # timm fails at once by itself
    assert hub_unreachable(MODEL) is None
    assert no_network == []
    monkeypatch.delenv('HF_HUB_OFFLINE')
    assert hub_unreachable(MODEL).startswith('huggingface.co is unreachable')
    for online in ('0', 'false'):  # as huggingface_hub reads it: not offline
        monkeypatch.setenv('HF_HUB_OFFLINE', online)
        assert hub_unreachable(MODEL).startswith('huggingface.co is unreachable')


def test_a_pretrained_tag_timm_does_not_have_is_named_with_the_tags_it_has():
    # timm.is_model ignores the tag; create_model then raised "Invalid pretrained tag"
    with pytest.raises(ConfigError, match=r'model_name="vit_tiny_patch16_224.dinov2": timm '
                       r'has no pretrained tag "dinov2" for vit_tiny_patch16_224; use one of '
                       r'vit_tiny_patch16_224.augreg_in21k'):
        DINOv2Backbone(model_name='vit_tiny_patch16_224.dinov2')


def test_cached_weights_are_left_to_timm(no_network, monkeypatch):
    monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache',
                        lambda repo, name: f'/cache/{repo}/{name}')
    assert hub_unreachable(MODEL) is None and no_network == []
