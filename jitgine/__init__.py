"""jitgine: MegEngine's Python experience on a JIT kernel compiler.

    import jitgine as jg
    import jitgine.functional as F
"""

from . import functional, random
from .runtime import get_num_threads, set_num_threads
from .serialization import load, save
from .tensor import Parameter, Tensor, tensor
from .model import Model

__version__ = "0.1.0"


def set_default_device(device: str = "cpux") -> None:
    """Accepted for MegEngine compatibility: the CPU is the only device."""
    Tensor(None, device=device)


def get_default_device() -> str:
    return "cpux"
