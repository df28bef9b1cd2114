"""What a config entry's ``type`` names: a registered name, with or without its scope,
or (pure-Python configs) the class itself."""
from typing import Any


def type_name(config_type: Any) -> str:
    """The registered name a config's ``type`` stands for: a string without its scope
    (``'mmseg.LoadAnnotations'`` -> ``'LoadAnnotations'``), or a class's name."""
    if isinstance(config_type, str):
        return config_type.split('.')[-1]
    return getattr(config_type, '__name__', str(config_type))


def has_type(node: Any, name: Any) -> bool:
    """Whether ``node`` is a config dict whose ``type`` stands for ``name`` (a registered
    name, scoped or not, or a class)."""
    return (isinstance(node, dict) and 'type' in node
            and type_name(node['type']) == type_name(name))
