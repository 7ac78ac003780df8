"""Split modules (codegen.split) and parallel compilation (codegen.jobs): the parts define every
function once, load together into code that computes exactly what the whole module computes, and
a compile that fails in a worker process is redone in this one."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from llvmlite import ir

import jitgine.functional as F
from codegen import compiler, jobs, split, target
from codegen.compiler import ENTRY_CFUNC
from jitgine.jit import trace

DEFINED = re.compile(r'^define [^@]*@"([^"]+)"', re.MULTILINE)


@pytest.fixture(scope="module")
def network():
    """A traced two-layer step with fused matmul epilogues and reductions, its module and outputs."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((13, 11)).astype(np.float32)
    w2 = rng.standard_normal((11, 7)).astype(np.float32)

    def step(x):
        hidden = F.relu(F.matmul(x, w1) + 0.25)
        out = F.tanh(F.matmul(hidden, w2))
        return out, (out * out).sum(axis=1), F.exp(hidden).max()

    traced = trace(step)
    x = rng.standard_normal((9, 13)).astype(np.float32)
    expected = [o.numpy() for o in traced(x)]
    compiled = traced.last.compiled
    module = compiler._lower(compiled.graph, compiled.plan).module
    return compiled, module, expected


def run_parts(compiled, parts: list[str]) -> list[np.ndarray]:
    loaded = target.LoadedObject([target.object_code(part) for part in parts])
    scratch_bytes = compiler._lower(compiled.graph, compiled.plan).scratch_bytes
    twin = compiler.CompiledGraph(
        graph=compiled.graph, entry=ENTRY_CFUNC(loaded.address("run")), n_inputs=compiled.n_inputs,
        n_outputs=compiled.n_outputs, slots=compiled.slots,
        arena=compiler._new_arena(compiled.plan, compiled.graph, scratch_bytes),
        plan=compiled.plan, kernel_names=compiled.kernel_names, compile_seconds=0.0, _object=loaded)
    return twin(*[compiled.bound(i) for i in range(compiled.n_inputs)])  # x and the captured weights


@pytest.mark.parametrize("parts", [2, 3])
def test_parts_define_each_function_once_and_compute_the_same_bits(network, parts, monkeypatch):
    compiled, module, expected = network
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    texts = split.partition(module, parts)
    assert len(texts) == parts
    defined = [name for text in texts for name in DEFINED.findall(text)]
    whole = {f.name for f in module.functions if f.blocks}
    assert sorted(defined) == sorted(whole)  # each exactly once
    assert "run" in DEFINED.findall(texts[0])
    for got, want in zip(run_parts(compiled, texts), expected):
        np.testing.assert_array_equal(got, want)


def test_small_module_stays_whole(network):
    _, module, _ = network
    assert split.partition(module, 1) == [str(module)]
    assert split.plan(module, 1) is None
    instructions = sum(len(b.instructions) for f in module.functions for b in f.blocks)
    texts = split.partition(module, 1000)  # more parts asked than the size allows
    assert len(texts) <= max(1, instructions // split.MIN_PART_INSTRUCTIONS)


def test_a_reference_the_plan_missed_is_an_error_and_the_graph_still_compiles(network, monkeypatch):
    compiled, module, expected = network
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    parts = split.plan(module, 2)
    hidden = split.SplitPlan(parts.bins, frozenset())  # as if no cross-part call had been seen
    with pytest.raises(split.SplitError, match="keeps internal"):
        for i in range(len(hidden.bins)):
            split.part_text(module, hidden, i)
    monkeypatch.setattr(split, "plan", lambda module, parts, entry="run": hidden)
    monkeypatch.setenv("JITGINE_CACHE_DIR", "off")
    again = compiler.compile_graph(compiled.graph)  # falls back to the whole module
    for got, want in zip(again(*[compiled.bound(i) for i in range(compiled.n_inputs)]), expected):
        np.testing.assert_array_equal(got, want)


def _parts_for_workers(module, monkeypatch, workers: int) -> list[str]:
    """`module` cut into `workers` parts, compiled by that many processes, without the disk cache."""
    monkeypatch.setenv("JITGINE_CACHE_DIR", "off")
    monkeypatch.setenv("JITGINE_COMPILE_JOBS", str(workers))
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    return split.partition(module, workers)


def test_worker_processes_build_the_same_objects(network, monkeypatch):
    _, module, _ = network
    texts = _parts_for_workers(module, monkeypatch, 3)
    assert jobs.object_codes(texts) == [target.object_code(text) for text in texts]


def test_a_failing_worker_is_redone_here(network, monkeypatch):
    _, module, _ = network
    texts = _parts_for_workers(module, monkeypatch, 2)
    parent = os.getpid()

    def compile_here_only(text: str) -> bytes:
        if os.getpid() != parent:
            raise RuntimeError("worker crashed")
        return target.object_code(text)

    objects = jobs.object_codes(texts, compile_here_only)
    assert objects == [target.object_code(text) for text in texts]


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_compile_jobs_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("JITGINE_COMPILE_JOBS", value)
    with pytest.raises(ValueError, match="JITGINE_COMPILE_JOBS must be a positive integer"):
        jobs.compile_jobs()


def test_graph_entry_holds_every_part_and_rejects_a_truncated_one(network):
    compiled, _, _ = network
    objects = [b"first object", b"second"]
    entry = compiler._graph_entry(compiled.kernel_names, compiled.kernel_nodes, compiled.graph, objects, 4096)
    names, nodes, parsed, scratch_bytes = compiler._parse_graph_entry(entry, compiled.graph)
    assert parsed == objects and names == compiled.kernel_names and nodes == compiled.kernel_nodes
    assert scratch_bytes == 4096
    assert compiler._parse_graph_entry(entry[:-1], compiled.graph) is None


def _synthetic_module(sizes: dict[str, int], optnone_entry: bool):
    """A module whose `run` (of sizes["run"] instructions) calls each other function once."""
    module = ir.Module("synthetic")
    void = ir.FunctionType(ir.VoidType(), [ir.IntType(64)])
    functions = {name: ir.Function(module, void, name) for name in sizes}
    for name, size in sizes.items():
        fn = functions[name]
        builder = ir.IRBuilder(fn.append_basic_block())
        value = fn.args[0]
        for _ in range(size - 1 - (len(sizes) - 1 if name == "run" else 0)):
            value = builder.add(value, value)
        if name == "run":
            for callee in sizes:
                if callee != "run":
                    builder.call(functions[callee], [value])
        builder.ret_void()
    if optnone_entry:
        functions["run"].attributes.add("noinline")
        functions["run"].attributes.add("optnone")
    return module


@pytest.mark.parametrize("optnone_entry", [False, True])
def test_an_optnone_entry_is_weighed_at_its_compile_cost(monkeypatch, optnone_entry):
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    module = _synthetic_module({"run": 1000, "k1": 600, "k2": 500, "k3": 400}, optnone_entry)
    bins = split.plan(module, 2).bins
    # Counted at a tenth, the entry (100) leaves room for two kernels beside it: 1000 | 1000 in cost.
    # Counted in full it is a part's heaviest item: run + k3 (1400) | k1 + k2 (1100).
    expected = [["run", "k2", "k3"], ["k1"]] if optnone_entry else [["run", "k3"], ["k1", "k2"]]
    assert [sorted(b, key=list(module.globals).index) for b in bins] == expected
