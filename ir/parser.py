"""Reads the text that `ir.printer` writes back into a verified `Graph`."""

from __future__ import annotations

import json
import re
from typing import Any

from .graph import Graph, Node, Value, freeze_attrs
from .ops import infer
from .types import DType, TensorType

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<value>%[A-Za-z0-9_.]+)
    | (?P<symbol>@[A-Za-z0-9_.\-]+)
    | (?P<type>(?:f32|f64|i32|i64|bool)\[[0-9,]*\])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:inf|nan|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?))
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[(){}\[\],=:])
    )""",
    re.VERBOSE,
)


class ParseError(ValueError):
    pass


class _Parser:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                line = text.count("\n", 0, pos) + 1
                raise ParseError(f"line {line}: cannot read {text[pos:pos + 20]!r}")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind), text.count("\n", 0, pos) + 1))
            pos = match.end()
        self.pos = 0
        self.values: dict[str, Value] = {}

    def peek(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            return ("eof", "")
        kind, text, _ = self.tokens[self.pos]
        return kind, text

    def take(self, kind: str, text: str | None = None) -> str:
        got_kind, got_text = self.peek()
        if got_kind != kind or (text is not None and got_text != text):
            line = self.tokens[min(self.pos, len(self.tokens) - 1)][2] if self.tokens else 1
            raise ParseError(f"line {line}: expected {text or kind}, found {got_text or 'end of text'!r}")
        self.pos += 1
        return got_text

    def accept(self, kind: str, text: str) -> bool:
        if self.peek() == (kind, text):
            self.pos += 1
            return True
        return False

    def tensor_type(self) -> TensorType:
        text = self.take("type")
        dtype, dims = text[:-1].split("[")
        return TensorType(tuple(int(d) for d in dims.split(",") if d), DType.parse(dtype))

    def define(self, name: str, type: TensorType) -> Value:
        if name in self.values:
            raise ParseError(f"value {name} is defined twice")
        value = Value(type)
        self.values[name] = value
        return value

    def use(self, name: str) -> Value:
        if name not in self.values:
            raise ParseError(f"value {name} is used before it is defined")
        return self.values[name]

    def params(self) -> list[Value]:
        self.take("punct", "(")
        params = []
        while not self.accept("punct", ")"):
            if params:
                self.take("punct", ",")
            name = self.take("value")
            self.take("punct", ":")
            params.append(self.define(name, self.tensor_type()))
        return params

    def attr_value(self) -> Any:
        kind, text = self.peek()
        if kind == "punct" and text == "[":
            self.pos += 1
            items = []
            while not self.accept("punct", "]"):
                if items:
                    self.take("punct", ",")
                items.append(self.attr_value())
            return tuple(items)
        self.pos += 1
        if kind == "number":
            if any(c in text for c in ".eEn") or "inf" in text:
                return float(text)
            return int(text)
        if kind == "word" and text in ("true", "false"):
            return text == "true"
        if kind == "string":
            return json.loads(text)
        raise ParseError(f"cannot read attribute value {text!r}")

    def body(self, inputs: list[Value], name: str) -> Graph:
        graph = Graph(inputs, [], [], name)
        while not self.accept("word", "return"):
            graph.nodes.append(self.node())
        graph.outputs.append(self.use(self.take("value")))
        while self.accept("punct", ","):
            graph.outputs.append(self.use(self.take("value")))
        self.take("punct", "}")
        return graph

    def node(self) -> Node:
        result_names = [self.take("value")]
        while self.accept("punct", ","):
            result_names.append(self.take("value"))
        self.take("punct", "=")
        op = self.take("word")
        self.take("punct", "(")
        operands = []
        while not self.accept("punct", ")"):
            if operands:
                self.take("punct", ",")
            operands.append(self.use(self.take("value")))
        attrs: dict[str, Any] = {}
        if self.accept("punct", "{"):
            while not self.accept("punct", "}"):
                if attrs:
                    self.take("punct", ",")
                key = self.take("word")
                self.take("punct", "=")
                attrs[key] = self.attr_value()
        self.take("punct", ":")
        types = [self.tensor_type()]
        while self.accept("punct", ","):
            types.append(self.tensor_type())
        region = None
        if self.accept("word", "region"):
            region_inputs = self.params()
            self.take("punct", "{")
            region = self.body(region_inputs, "region")
        frozen = freeze_attrs(attrs)
        inferred = infer(op, [v.type for v in operands], dict(frozen), region)
        if inferred != types:
            raise ParseError(
                f"{op}: the text says result types {[str(t) for t in types]} "
                f"but the op infers {[str(t) for t in inferred]}"
            )
        results = tuple(self.define(n, t) for n, t in zip(result_names, types))
        if len(results) != len(types):
            raise ParseError(f"{op}: {len(result_names)} result names for {len(types)} types")
        return Node(op, tuple(operands), frozen, results, region)


def parse_graph(text: str) -> Graph:
    """Parse one `func @name(...) { ... }` into a Graph (verified)."""
    from .verify import verify

    parser = _Parser(text)
    parser.take("word", "func")
    name = parser.take("symbol")[1:]
    inputs = parser.params()
    parser.take("punct", "{")
    graph = parser.body(inputs, name)
    if parser.peek()[0] != "eof":
        raise ParseError(f"unexpected text after the graph: {parser.peek()[1]!r}")
    verify(graph)
    return graph
