"""One static HTML page with everything the inspection tools show about one compiled signature.

Sections: a summary (function, signature, machine, threads, step time), the
graph picture (inline SVG, kernels coloured by their share of the step),
the measured kernel table (click a header to sort), the IR after each pass
with its diff, and for every kernel its LLVM IR before and after LLVM's
optimisation and its assembly. No external resources: the file can be
mailed or archived as is.
"""

from __future__ import annotations

import html
import os
import shutil

from codegen import target

from ..jit.inspection import KernelTable, Program, kernel_code, machine_code, measure, stage_diffs
from .graphviz import render, to_dot

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; }
td.name, td.prims, th.name, th.prims { text-align: left; }
pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.8em; max-height: 40em; }
.diff-add { color: #116611; } .diff-del { color: #aa1111; }
#graph { overflow: auto; max-height: 60em; border: 1px solid #ddd; }
#graph svg { max-width: none; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
.bar { display: inline-block; height: 0.7em; background: #e8833a; vertical-align: middle; }
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = th.dataset.numeric === '1';
    var down = th.dataset.down !== '1';
    th.dataset.down = down ? '1' : '0';
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value || a.cells[column].textContent;
      var y = b.cells[column].dataset.value || b.cells[column].textContent;
      var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return down ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
document.body.dataset.ready = '1';
"""


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        css = "diff-add" if line.startswith("+") else "diff-del" if line.startswith("-") else ""
        escaped = html.escape(line)
        lines.append(f'<span class="{css}">{escaped}</span>' if css else escaped)
    return "<pre>" + "\n".join(lines) + "</pre>"


def _summary(program: Program, table: KernelTable) -> str:
    host = target.host()
    flops = sum(k.flops for k in table.kernels)
    items = [
        ("function", program.name), ("signature", program.signature or "-"),
        ("machine", f"{host.cpu}, {host.vector_bits}-bit vectors, {table.threads} thread(s)"),
        ("kernels", f"{len(table.kernels)} from {len(program.graph.nodes)} optimised nodes "
                    f"({len(program.stages.get('input', program.graph).nodes)} as traced)"),
        ("measured step", f"{table.step_seconds * 1e3:.3f} ms (mean of the faster half of {table.repeat} runs); "
                          f"kernels add up to {table.kernel_seconds * 1e3:.3f} ms = {100 * table.coverage:.1f}% of it; "
                          f"{table.plain_step_seconds * 1e3:.3f} ms without the clock reads between kernels"),
        ("work", f"{flops / 1e6:.2f} MFLOP, {flops / table.step_seconds / 1e9 if table.step_seconds else 0:.2f} "
                 "GFLOP/s over the step"),
    ]
    arena = getattr(program.compiled, "arena_bytes", None)
    if arena is not None:
        items.append(("arena", f"{arena / 1e6:.2f} MB for all intermediates"))
    rows = "".join(f"<tr><td class='name'>{html.escape(k)}</td><td class='name'>{html.escape(v)}</td></tr>"
                   for k, v in items)
    return f"<table>{rows}</table>"


def _kernel_table(table: KernelTable) -> str:
    head = ("<thead><tr><th class='name'>kernel</th><th class='prims'>primitives</th>"
            "<th data-numeric='1'>MFLOP</th><th data-numeric='1'>MB</th><th data-numeric='1'>time ms</th>"
            "<th data-numeric='1'>GFLOP/s</th><th data-numeric='1'>GB/s</th><th data-numeric='1'>share</th>"
            "</tr></thead>")
    body = []
    for r in table.rows():
        name = html.escape(r["kernel"])
        bar = f"<span class='bar' style='width:{min(100.0, 100 * r['share']):.1f}px'></span>"
        body.append(
            f"<tr><td class='name'><a href='#kernel-{name}'>{name}</a></td>"
            f"<td class='prims'>{html.escape(' + '.join(r['primitives']))}</td>"
            f"<td data-value='{r['flops']}'>{r['flops'] / 1e6:.3f}</td>"
            f"<td data-value='{r['bytes']}'>{r['bytes'] / 1e6:.3f}</td>"
            f"<td data-value='{r['seconds']}'>{r['seconds'] * 1e3:.3f}</td>"
            f"<td>{r['gflops']:.2f}</td><td>{r['gbytes']:.2f}</td>"
            f"<td data-value='{r['share']}'>{100 * r['share']:.1f}% {bar}</td></tr>")
    return f"<table class='sortable' id='kernels'>{head}<tbody>{''.join(body)}</tbody></table>"


def _graph(program: Program, table: KernelTable) -> str:
    if shutil.which("dot") is None:
        return ("<p>Graphviz's <code>dot</code> is not installed (apt-get install graphviz), so the graph is "
                "shown as DOT text.</p>" + _pre(to_dot(program, table=table)))
    svg = render(to_dot(program, table=table), "svg").decode()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML takes neither


def _passes(program: Program) -> str:
    parts = []
    for name, text, diff in stage_diffs(program.stages):
        nodes = len(program.stages[name].nodes)
        body = (_diff(diff) if diff else "<p>(no change)</p>") if name != "input" else ""
        parts.append(f"<details><summary>{html.escape(name)}: {nodes} nodes</summary>{body}"
                     f"<details><summary>full IR after {html.escape(name)}</summary>{_pre(text)}</details></details>")
    return "".join(parts)


def _kernels_code(program: Program, table: KernelTable) -> str:
    compiled = program.compiled
    code = machine_code(compiled)
    levels = {level: code.functions(level) for level in ("llvm", "llvm-opt", "asm")}
    parts = []
    for kernel, row in zip(table.kernels, table.rows()):
        name = html.escape(kernel.name)
        sections = "".join(
            f"<details><summary>{title}</summary>{_pre(kernel_code(compiled, kernel.name, level, levels[level]))}"
            "</details>"
            for title, level in (("LLVM IR (generated)", "llvm"), ("LLVM IR (optimised)", "llvm-opt"),
                                 ("assembly", "asm")))
        node = _pre(str(kernel.node.region)) if kernel.node is not None and kernel.node.region is not None else ""
        parts.append(f"<details id='kernel-{name}'><summary>{name}: {html.escape(' + '.join(kernel.primitives))} "
                     f"({row['seconds'] * 1e3:.3f} ms)</summary>{node}{sections}</details>")
    return "".join(parts)


def render_report(program: Program, table: KernelTable) -> str:
    """The HTML text of the report."""
    title = f"jitgine: {program.name}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{_summary(program, table)}"
        f"<h2 id='graph-title'>Graph (kernels as clusters, coloured by share of the step)</h2>"
        f"<div id='graph'>{_graph(program, table)}</div>"
        f"<h2>Kernels (measured)</h2>{_kernel_table(table)}"
        f"<h2>IR after each pass</h2>{_passes(program)}"
        f"<h2>Code of each kernel</h2>{_kernels_code(program, table)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(program: Program, path: str, repeat: int = 20, table: KernelTable | None = None) -> str:
    """Measure (unless `table` is given) and write the report to `path` atomically; returns `path`."""
    table = table if table is not None else measure(program, repeat=repeat)
    text = render_report(program, table)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
