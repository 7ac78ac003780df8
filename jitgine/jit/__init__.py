"""jitgine.jit: `trace` compiles a whole function (a training step) into one native call;
`load` reads back a function written by `trace.dump` and runs it without the Python code."""

from .dump import DumpError, LoadedFunction, load
from .trace import TraceError, trace

__all__ = ["trace", "TraceError", "load", "LoadedFunction", "DumpError"]
