"""Regenerate docs/notebook-example.ipynb: a worked notebook run in a real kernel with the embedded model.

    .venv/bin/python docs/notebook_example.py

The kernel gets fresh, temporary config and data dirs (memory off, SmolLM2 answering in at
most 64 tokens), so the run needs no network, no key and touches none of your history.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

CONFIG = """\
[small]
model = "llamacpp:smollm2"
max_tokens = 64
temperature = 0.0
seed = 1

[memory]
enabled = false
"""

CELLS = [
    ("markdown", "# slmchat in a notebook\n\nLoad the extension, then every `%%slm` cell is a turn."),
    ("code", "%load_ext slmchat"),
    ("code", "%%slm\nWhat is the capital of France?"),
    ("markdown", "`{name}` is filled in from the notebook's variables; `-o` keeps the answer."),
    ("code", 'country = "Italy"'),
    ("code", "%%slm -o answer\nWhat is the capital of {country}?"),
    ("code", "answer"),
    ("markdown", "`--dry-run` says where a cell would run and why, without running a model."),
    ("code", "%%slm --dry-run\nProve that there are infinitely many primes, step by step."),
    ("markdown", "`--explain` adds the whole routing decision under the answer."),
    ("code", "%%slm --explain\nSay hello in French."),
    ("markdown", "Bad input is one line with its fix."),
    ("code", "%%slm -r medium\nHello"),
    ("code", "%slm stats"),
]


def main() -> None:
    dirs = Path(tempfile.mkdtemp())
    (dirs / "config").mkdir()
    (dirs / "config" / "config.toml").write_text(CONFIG)
    env = {**os.environ, "SLMCHAT_CONFIG_DIR": str(dirs / "config"), "SLMCHAT_DATA_DIR": str(dirs / "data"),
           "HF_HUB_OFFLINE": "1", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}  # fmt: skip
    nb = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        nb.cells.append(
            nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=False,
                                     resources={"metadata": {"path": str(dirs)}})  # fmt: skip
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    out = Path(__file__).with_name("notebook-example.ipynb")
    nbformat.write(nb, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
