"""jitgine.jit: `trace` compiles a whole function (a training step) into one native call."""

from .trace import TraceError, trace

__all__ = ["trace", "TraceError"]
