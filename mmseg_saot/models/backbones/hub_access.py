"""Fail fast where timm would spend a minute retrying an unreachable Hugging Face hub.

``timm.create_model(name, pretrained=True)`` downloads through ``huggingface_hub``, which
retries a failed connection with back-off: on a machine without network a misconfigured
``pretrained=True`` took ~55 s to fail. :func:`hub_unreachable` answers in one connection
attempt whether the hub can serve weights that are not cached yet.
"""
import os
import socket
from typing import Optional
from urllib.parse import urlparse

# a proxy may be the only way out: then a direct connection proves nothing
PROXY_VARIABLES = ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy')
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


def hub_unreachable(model_name: str, timeout: float = 5.0) -> Optional[str]:
    """Why the hub cannot serve ``model_name``'s pretrained weights now, or None.

    None (let timm try) where the weights are not on the hub (timm's own URL), are in
    the local Hugging Face cache, a proxy is configured, ``HF_HUB_OFFLINE`` is set
    (timm then fails at once by itself), or the hub's host accepts a connection.

    Args:
        model_name: a timm model name, with or without its pretrained tag.
        timeout: seconds to wait for the connection.
    """
    import huggingface_hub
    import timm
    # huggingface_hub's own reading of HF_HUB_OFFLINE ("0"/"false" is online)
    if _hub_offline() or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    try:
        repo = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    except Exception:  # no pretrained config: timm says so itself
        return None
    if not repo or any(isinstance(huggingface_hub.try_to_load_from_cache(repo, name), str)
                       for name in WEIGHT_FILES):
        return None
    host = urlparse(huggingface_hub.constants.ENDPOINT).hostname or 'huggingface.co'
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        return f'{host} is unreachable ({type(err).__name__}: {err})'
    return None


def _hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ...),
    as huggingface_hub reads it."""
    value = os.environ.get('HF_HUB_OFFLINE', '').strip().upper()
    return value in {'1', 'ON', 'YES', 'TRUE'}
