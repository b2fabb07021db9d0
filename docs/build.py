"""Build the docs: run every example and render each page with its output and figures.

Usage: ``python docs/build.py`` (from the repository root). Every ```python block of every
page runs, in order, in one namespace per page; the rendered pages (each block followed by
what it printed) and the figures the examples save go to ``docs/_build/``. A failing
example stops the build with its page and block named.
"""

import contextlib
import io
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BUILD = DOCS / "_build"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def render(page):
    text = page.read_text()
    namespace = {"__name__": f"docs.{page.stem}"}
    pieces, last = [], 0
    for number, match in enumerate(BLOCK.finditer(text), 1):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(match.group(1), f"{page.name} block {number}", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            raise SystemExit(f"docs build failed: {page.name}, example block {number}") from None
        pieces.append(text[last:match.end()])
        if out.getvalue().strip():
            pieces.append(f"\n\n```text\n{out.getvalue().rstrip()}\n```")
        last = match.end()
    pieces.append(text[last:])
    (BUILD / page.name).write_text("".join(pieces))


def main():
    import matplotlib

    matplotlib.use("Agg")
    (BUILD / "figures").mkdir(parents=True, exist_ok=True)
    os.chdir(DOCS.parent)
    pages = sorted(DOCS.glob("*.md"))
    for page in pages:
        start = time.perf_counter()
        render(page)
        print(f"built {page.name} in {time.perf_counter() - start:.0f} s")
    print(f"docs written to {BUILD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
