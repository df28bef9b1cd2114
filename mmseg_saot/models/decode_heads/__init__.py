from .mlp_head import MLPHead

__all__ = ['MLPHead']
