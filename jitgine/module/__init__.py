"""jitgine.module (`import jitgine.module as M`): layers and models, as MegEngine's `megengine.module`."""

from .activation import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import ModuleList, Sequential
from .dropout import Dropout
from .identity import Flatten, Identity
from .linear import Linear
from .module import Module

__all__ = [
    "Module", "Linear", "ReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "LeakyReLU", "Softmax", "Identity", "Flatten",
    "Sequential", "ModuleList", "Dropout", "BatchNorm1d", "BatchNorm2d",
]
from .conv import Conv2d  # noqa: E402,F401
from .pooling import AvgPool2d, MaxPool2d  # noqa: E402,F401
