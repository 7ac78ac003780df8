"""jitgine.module (`import jitgine.module as M`): layers and models, as MegEngine's `megengine.module`."""

from .activation import GELU, LeakyReLU, PReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import ModuleDict, ModuleList, Sequential
from .dropout import Dropout
from .embedding import Embedding
from .identity import Flatten, Identity
from .linear import Linear
from .module import Module
from .normalization import LayerNorm

__all__ = [
    "Module", "Linear", "ReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "LeakyReLU", "PReLU", "Softmax", "Identity",
    "Flatten", "Sequential", "ModuleList", "ModuleDict", "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "Embedding", "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
]
from .conv import Conv1d, Conv2d, ConvTranspose2d  # noqa: E402
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d  # noqa: E402
