"""Pieces shared by the SAM 1 and SAM 2 models: attention backend, layers, positions."""

from .attention import attention, attention_backend, select_backend
from .layers import MLP, LayerNorm2d, MLPBlock

__all__ = ["MLP", "LayerNorm2d", "MLPBlock", "attention", "attention_backend", "select_backend"]
