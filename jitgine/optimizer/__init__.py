"""jitgine.optimizer (`import jitgine.optimizer as optim`): SGD, Adam, AdamW and lr schedules."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer, ParamGroup
from .sgd import SGD

__all__ = ["Optimizer", "ParamGroup", "SGD", "Adam", "AdamW", "lr_scheduler"]
