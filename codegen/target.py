"""The host target: CPU name and features, the optimisation pipeline, and
turning LLVM IR text into loaded machine code.

Everything in the back end asks this module what the machine is (vector
width, register count, cache sizes) instead of assuming AVX-512 or AVX2.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.binding as llvm


@dataclass(frozen=True)
class HostInfo:
    """What the code generators need to know about the CPU they target."""

    triple: str
    cpu: str
    features: str
    vector_bits: int  # widest float vector register: 512 (AVX-512), 256 (AVX2), 128 (SSE)
    vector_registers: int  # 32 zmm with AVX-512, 16 ymm otherwise
    has_fma: bool
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int

    def lanes(self, dtype_bytes: int) -> int:
        """Elements of a `dtype_bytes`-wide type that fit one vector register."""
        return max(1, self.vector_bits // (8 * dtype_bytes))

    @property
    def key(self) -> str:
        """What the compiled code depends on: part of every cache key."""
        return f"{self.triple}|{self.cpu}|{self.features}|llvm{llvm.llvm_version_info}|{PIPELINE}"


def _cache_size(level: int, kind: str, default: int) -> int:
    """Per-core cache size from sysfs (falls back to a typical value)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() not in (kind, "Unified"):
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip()
            match = re.fullmatch(r"(\d+)([KMG]?)", text)
            if match:
                scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)]
                return int(match.group(1)) * scale
    except OSError:
        pass
    return default


@functools.lru_cache(maxsize=None)
def _initialize() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    llvm.set_option("jitgine", "-disable-lsr")  # see PIPELINE


@functools.lru_cache(maxsize=None)
def host() -> HostInfo:
    """Describe the machine this process runs on (read once)."""
    _initialize()
    features = llvm.get_host_cpu_features()
    enabled = {name for name, on in features.items() if on}
    if "avx512f" in enabled:
        bits, registers = 512, 32
    elif "avx" in enabled:
        bits, registers = 256, 16
    else:
        bits, registers = 128, 16
    return HostInfo(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=features.flatten(),
        vector_bits=bits,
        vector_registers=registers,
        has_fma="fma" in enabled,
        l1d_bytes=_cache_size(1, "Data", 32 * 1024),
        l2_bytes=_cache_size(2, "Unified", 512 * 1024),
        l3_bytes=_cache_size(3, "Unified", 8 * 1024 * 1024),
    )


@functools.lru_cache(maxsize=None)
def target_machine() -> llvm.TargetMachine:
    info = host()
    target = llvm.Target.from_triple(info.triple)
    return target.create_target_machine(
        cpu=info.cpu, features=info.features, opt=3, reloc="pic", codemodel="default", jit=True
    )


# The optimisation pipeline (part of every cache key). LLVM's loop unroller is off: the GEMM, conv
# and epilogue micro-kernels are unrolled by their generators already, and unrolling them again
# took ~40% of the LeNet step's LLVM time (CPU seconds 23.3 -> 14.5 for optimise + machine code)
# for no step-time gain (1 thread: min 8.48 -> 8.35-8.38 ms, loss bit-identical); vectorised
# elementwise loops are still interleaved by the loop vectoriser.
#
# Loop strength reduction (a code generator pass) is off too: it took a fifth of the code
# generator's time on the LeNet step's module (emit 2.56 -> 1.49 s CPU) while our loops already
# address memory as base + index*size; measured with and without it, same process: GEMM 1 thread
# 0.95x -> 0.97x OpenBLAS (256-1024), the LeNet step 8.35 -> 8.62 ms, nearly all of it the direct
# grad_weight kernel of conv1 (2.32 -> 2.56 ms), whose 3-vector rows pay for two extra adds.
#
# O2 rather than O3: the generators write the vector code and the loop nests themselves, and O3's
# extra passes bought nothing measurable here (LeNet step 8.90 vs 8.75 ms median, GEMM and the
# elementwise benchmark unchanged) for 10% more compile time (3.23 -> 2.91 s cold, LeNet step).
PIPELINE = "O2 loop-vectorize slp-vectorize no-unroll no-lsr"


def optimize(module: llvm.ModuleRef) -> None:
    """Run LLVM's O2 pipeline with loop and SLP vectorisation (no loop unrolling) on `module` in place
    (strength reduction, off for the whole process, is the code generator's: see PIPELINE)."""
    tuning = llvm.create_pipeline_tuning_options(speed_level=2)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    tuning.loop_unrolling = False
    builder = llvm.create_pass_builder(target_machine(), tuning)
    builder.getModulePassManager().run(module, builder)


def parse(llvm_ir: str) -> llvm.ModuleRef:
    _initialize()
    module = llvm.parse_assembly(llvm_ir)
    module.triple = host().triple
    module.data_layout = str(target_machine().target_data)
    module.verify()
    return module


def optimized_ir(llvm_ir: str) -> str:
    module = parse(llvm_ir)
    optimize(module)
    return str(module)


def assembly(llvm_ir: str) -> str:
    module = parse(llvm_ir)
    optimize(module)
    return target_machine().emit_assembly(module)


def object_code(llvm_ir: str) -> bytes:
    """Optimise and compile LLVM IR text to a relocatable object file."""
    module = parse(llvm_ir)
    optimize(module)
    return target_machine().emit_object(module)


_runtime_libraries_loaded = False


def _load_runtime_libraries() -> None:
    """Make libgomp's symbols (GOMP_parallel, omp_get_thread_num) visible to loaded code."""
    global _runtime_libraries_loaded
    if _runtime_libraries_loaded:
        return
    import ctypes
    import ctypes.util

    from .parallel import prepare_environment

    prepare_environment()
    for name in ("libgomp.so.1", ctypes.util.find_library("gomp")):
        if not name:
            continue
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            llvm.load_library_permanently(name)
            break
        except OSError:
            continue
    else:
        raise RuntimeError(
            "jitgine needs libgomp (GNU OpenMP runtime) for threads: install it "
            "(Debian: apt-get install libgomp1)"
        )
    _runtime_libraries_loaded = True


_loaded: list["LoadedObject"] = []


class LoadedObject:
    """Machine code (one object file, or the parts of a split module) loaded into this process;
    symbols resolve to addresses.

    Loaded code is never unloaded: MCJIT takes over the object file's memory,
    and tearing an engine down while llvmlite still owns that object corrupts
    the heap. Kernels are small and compiled once per process, so keeping
    every engine (in `_loaded`) costs little and keeps every function pointer
    valid for the life of the process.
    """

    def __init__(self, obj: bytes | Sequence[bytes]):
        _initialize()
        _load_runtime_libraries()
        empty = llvm.parse_assembly("")
        empty.triple = host().triple
        self._engine = llvm.create_mcjit_compiler(empty, target_machine())
        # Several objects (the parts of one split module) are linked to each other by the engine.
        self._object_files = [llvm.ObjectFileRef.from_data(o) for o in ([obj] if isinstance(obj, bytes) else obj)]
        for object_file in self._object_files:
            self._engine.add_object_file(object_file)
        self._engine.finalize_object()
        self._engine.run_static_constructors()
        _loaded.append(self)

    def address(self, symbol: str) -> int:
        address = self._engine.get_function_address(symbol)
        if not address:
            raise KeyError(f"symbol {symbol!r} not found in compiled code")
        return address
