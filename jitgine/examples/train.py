"""`jitgine-train EXAMPLE [options]`: run a bundled example, e.g. `jitgine-train lenet --epochs 10`."""

from __future__ import annotations

import sys

from . import lenet

EXAMPLES = {"lenet": lenet.main}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in EXAMPLES:
        names = ", ".join(sorted(EXAMPLES))
        got = f"unknown example {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        sys.exit(f"usage: jitgine-train EXAMPLE [options]   ({got}examples: {names}; "
                 "`jitgine-train lenet --help` lists the options)")
    EXAMPLES[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
