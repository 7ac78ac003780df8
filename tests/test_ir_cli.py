"""`jitgine-ir` on a dumped LeNet training step: every subcommand, dump -> load -> run, the HTML
report in headless Chromium, and a trained LeNet reproducing its accuracy in a fresh process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

import jitgine as jg
from ir.parser import parse_graph
from jitgine.examples import lenet
from jitgine.jit import load
from jitgine.jit.inspection import measure
from jitgine.jit.trace import PIPELINE
from jitgine.tools.ir_cli import main

BATCH = 16


def _require(program: str, *alternatives: str) -> str:
    """The path of `program`: CI installs it (.ci/run); only without apt-get may a test skip."""
    for name in (program, *alternatives):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") is None:
        pytest.skip(f"{program} is not installed and apt-get is unavailable to install it")
    pytest.fail(f"{program} is not installed: apt-get install {program} (.ci/run installs it)")


@pytest.fixture(scope="module")
def lenet_step(tmp_path_factory):
    jg.random.seed(0)
    net, step = lenet.make_train_step(lr=0.05)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((BATCH, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, BATCH).astype(np.int32)
    step(images, labels)
    folder = tmp_path_factory.mktemp("lenet")
    path = folder / "lenet_step.jgd"
    step.dump(path)
    return SimpleNamespace(path=str(path), folder=folder, step=step, net=net, images=images, labels=labels)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_ir_that_parses_back(lenet_step, capsys):
    code, out, _ = run(capsys, "show", lenet_step.path)
    assert code == 0 and out == str(parse_graph(out))
    assert out == lenet_step.step.ir("input")
    code, out, _ = run(capsys, "show", lenet_step.path, "--stage", "optimized")
    assert code == 0 and "fused" in out and out == str(parse_graph(out))
    code, out, _ = run(capsys, "show", lenet_step.path, "--summary")
    assert "net.conv1.weight: float32[6, 1, 5, 5]" in out and f"float32[{BATCH},1,32,32]" in out


def test_passes_prints_each_pass_with_a_diff(lenet_step, capsys):
    code, out, _ = run(capsys, "passes", lenet_step.path)
    assert code == 0
    headers = re.findall(r"^===== after (\S+):", out, re.MULTILINE)
    assert headers[0] == PIPELINE[0] and len(headers) == len(PIPELINE)
    assert re.search(r"^\+  %\d+(, %\d+)* = fused", out, re.MULTILINE)  # fusion shows as added lines
    assert re.search(r"^-  %\d+ = exp", out, re.MULTILINE)  # ... replacing the primitives


def test_kernels_lists_every_kernel_and_the_times_add_up(lenet_step, capsys):
    code, out, _ = run(capsys, "kernels", lenet_step.path, "--repeat", "3")
    assert code == 0
    program = lenet_step.step._program()
    for name in program.compiled.kernel_names:
        assert re.search(rf"^{name}\s", out, re.MULTILINE), name
    assert "kernels cover" in out
    table = measure(program, [lenet_step.images, lenet_step.labels], repeat=15)
    assert all(s > 0 for s, k in zip(table.seconds, table.kernels) if k.flops > 1e6)
    assert 0.85 <= table.coverage <= 1.15, str(table)


def test_asm_of_one_kernel(lenet_step, capsys):
    kernel = next(k for k in lenet_step.step._program().compiled.kernel_names if "conv2d" in k)
    code, out, _ = run(capsys, "asm", lenet_step.path, "--kernel", kernel)
    assert code == 0 and re.search(rf"^{re.escape(kernel)}[.:]", out, re.MULTILINE) and re.search(r"vfmadd|vmulps", out)
    code, out, _ = run(capsys, "asm", lenet_step.path, "--kernel", kernel, "--llvm-opt")
    assert code == 0 and "define" in out
    code, _, err = run(capsys, "asm", lenet_step.path, "--kernel", "k999_none")
    assert code == 2 and "kernels are" in err and kernel in err


def test_graph_draws_conv_bias_relu_groups_as_clusters(lenet_step, capsys, tmp_path):
    code, _, _ = run(capsys, "graph", lenet_step.path, "-o", tmp_path / "g.dot")
    dot = (tmp_path / "g.dot").read_text()
    assert code == 0
    clusters = re.findall(r"subgraph (cluster_\d+) \{(.*?)\n  \}", dot, re.DOTALL)
    labels = [set(re.findall(r'label="(\w+)"', body)) for _, body in clusters]
    assert any({"conv2d", "add", "select"} <= names for names in labels), labels  # relu is le + select
    _require("dot")
    run(capsys, "graph", lenet_step.path, "-o", tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "conv2d" in svg and "net.conv1.weight" in svg
    run(capsys, "graph", lenet_step.path, "-o", tmp_path / "g.png", "--collapse")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "graph", lenet_step.path, "-o", tmp_path / "g.gif")
    assert code == 2 and ".svg, .png, .dot" in err


def test_report_opens_in_headless_chromium(lenet_step, capsys, tmp_path):
    _require("dot")
    browser = _require("chromium", "chromium-browser", "google-chrome")
    report = tmp_path / "report.html"
    code, out, _ = run(capsys, "report", lenet_step.path, "-o", report, "--repeat", "3")
    assert code == 0 and "wrote" in out
    text = report.read_text()
    for section in ("Kernels (measured)", "IR after each pass", "Code of each kernel", "<svg"):
        assert section in text
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'data-ready="1"' in dom  # the page's script ran to its end without an exception
    assert "<svg" in dom and "k0_fused_conv2d" in dom
    console_errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console_errors, console_errors


def test_module_function_dump_folder_and_ir_files(lenet_step, capsys, tmp_path, monkeypatch):
    script = tmp_path / "my_lenet.py"
    script.write_text(textwrap.dedent("""
        from jitgine.examples import lenet
        net, train_step = lenet.make_train_step()
    """))
    monkeypatch.setenv("JITGINE_DUMP", str(tmp_path / "dumps"))
    code, out, _ = run(capsys, "kernels", f"{script}:train_step", "--input", f"{BATCH}x1x32x32",
                       "--input", f"{BATCH}:int32", "--repeat", "2")
    monkeypatch.delenv("JITGINE_DUMP")
    assert code == 0 and "k0_fused_conv2d" in out and f"float32[{BATCH}, 1, 32, 32]" in out

    code, out, _ = run(capsys, "show", tmp_path / "dumps")  # one function: the folder is enough
    assert code == 0 and out == lenet_step.step.ir("input")
    (folder,) = (tmp_path / "dumps").iterdir()
    code, out, _ = run(capsys, "kernels", folder, "--repeat", "2", "--top", "3")
    assert code == 0 and len(re.findall(r"^k\d+_", out, re.MULTILINE)) == 3
    *_, optimized = sorted(folder.glob("*.ir"))  # the IR after the last pass
    code, out, _ = run(capsys, "show", optimized)
    assert code == 0 and "fused" in out and out == str(parse_graph(optimized.read_text()))
    code, out, _ = run(capsys, "passes", folder / "00-input.ir", "--diff-only")
    assert code == 0 and "===== after fuse_elementwise" in out
    code, _, err = run(capsys, "show", tmp_path / "nothing.jgd")
    assert code == 2 and "no such file" in err


def test_console_script_runs(lenet_step):
    script = shutil.which("jitgine-ir")
    command = [script] if script else [sys.executable, "-m", "jitgine.tools.ir_cli"]
    done = subprocess.run(command + ["show", "--summary", lenet_step.path], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "train_step" in done.stdout, done.stderr


def test_dump_load_run_equals_the_traced_step(lenet_step, tmp_path):
    path = tmp_path / "now.jgd"
    lenet_step.step.dump(path)
    loaded = load(path)
    for _ in range(2):  # both keep training from the same state
        a = lenet_step.step(lenet_step.images, lenet_step.labels)
        b = loaded(lenet_step.images, lenet_step.labels)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for name, param in lenet_step.net.named_parameters():
        np.testing.assert_array_equal(param.numpy(), loaded.state[f"net.{name}"])


def test_trained_lenet_reproduces_its_accuracy_in_a_fresh_process(lenet_step, tmp_path):
    train_loader, test_loader = lenet.build_dataloaders(batch_size=BATCH, limit=512)  # 128 test images
    for images, labels in train_loader:
        lenet_step.step(images, labels)
    test_images = np.concatenate([b[0] for b in test_loader])[:128]
    test_labels = np.concatenate([b[1] for b in test_loader])[:128]
    net = lenet_step.net
    net.eval()
    eval_step = lenet.make_eval_step(net)
    logits = np.concatenate([eval_step(test_images[i:i + 64]).numpy() for i in (0, 64)])
    net.train()
    accuracy = float((logits.argmax(axis=1) == test_labels).mean())
    eval_step.dump(tmp_path / "lenet_eval.jgd")
    np.save(tmp_path / "images.npy", test_images)
    script = textwrap.dedent(f"""
        import numpy as np
        import jitgine
        f = jitgine.jit.load({str(tmp_path / 'lenet_eval.jgd')!r})
        images = np.load({str(tmp_path / 'images.npy')!r})
        logits = np.concatenate([f(images[i:i + 64]).numpy() for i in (0, 64)])
        np.save({str(tmp_path / 'logits.npy')!r}, logits)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("JITGINE_DUMP", "JITGINE_LOG")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reloaded = np.load(tmp_path / "logits.npy")
    np.testing.assert_array_equal(reloaded, logits)
    assert float((reloaded.argmax(axis=1) == test_labels).mean()) == accuracy
