"""The notebook face in a real Jupyter kernel: cells executed by nbclient in an ipykernel of this venv.

The InteractiveShell tests check parsing and every option with scripted streams; these run what a
user runs: ``%load_ext slmchat`` and ``%%slm`` cells in a real ``ipykernel`` process (this venv's
Python), with the embedded SmolLM2 in llama.cpp as the small tier and a real ``llama_cpp.server``
as the large one. One kernel serves the module (a fresh conversation per test, ``%slm reset``);
the interrupt test starts its own, whose small tier may write long answers.

What the tests read is what a frontend gets: the cell's recorded outputs (nbclient applies
``update_display_data`` in place, as JupyterLab does), their metadata, and the ``execute_reply``
(its ``payload`` carries ``set_next_input``).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CONFIG = """
[small]
model = "llamacpp:smollm2"
max_tokens = {small_tokens}
temperature = 0.0
seed = 1

[large]
model = "openai:smollm2-server"
base_url = "{large_url}"
max_tokens = 24
temperature = 0.0
seed = 1

[memory]
enabled = false

[tools]
enabled = []
"""

CELL_TIMEOUT = 60  # seconds: the first cell loads the model


@dataclass
class Ran:
    """One executed cell: its outputs as the notebook records them, and the kernel's execute_reply content."""

    outputs: list[dict[str, Any]]
    reply: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.reply.get("status"))

    @property
    def payload(self) -> list[dict[str, Any]]:
        return list(self.reply.get("payload", []))

    @property
    def stdout(self) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == "stdout")

    def shown(self, mime: str = "text/markdown") -> str:
        """Everything shown in ``mime`` (falling back to text/plain), in order."""
        texts = []
        for output in self.outputs:
            data = output.get("data", {})
            if mime in data or "text/plain" in data:
                texts.append(str(data.get(mime, data.get("text/plain"))))
        return "\n".join(texts)

    def stats(self) -> dict[str, Any]:
        """The ``{"slmchat": ...}`` metadata of the cell's answer (the TurnStats dict)."""
        found = [o["metadata"]["slmchat"] for o in self.outputs if "slmchat" in o.get("metadata", {})]
        assert found, f"no output carries slmchat metadata: {self.outputs}"
        return found[-1]


@dataclass
class Kernel:
    """A running kernel and the nbclient driving it; ``run`` executes one more cell of its notebook."""

    client: Any
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    extension_loaded: bool = False

    def run(self, source: str, *, timeout: float = CELL_TIMEOUT, during: Callable[[Any], None] | None = None) -> Ran:
        """Execute ``source`` as a new code cell; ``during(cell)`` runs in a thread while it executes."""
        nb = self.client.nb
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["execution"] = {"timeout": timeout}
        nb.cells.append(cell)
        index = len(nb.cells) - 1
        self.client.timeout = int(timeout)
        watcher = threading.Thread(target=during, args=(cell,), daemon=True) if during else None
        if watcher:
            watcher.start()
        done = self.client.execute_cell(cell, index)
        if watcher:
            watcher.join(timeout)
        return Ran([dict(o) for o in done.outputs], self.replies.get(index, {}))

    def interrupt(self) -> None:
        """Interrupt the kernel as Jupyter's stop button does (SIGINT); callable from any thread."""
        asyncio.run(self.client.km.interrupt_kernel())  # nbclient's manager is the async one


def kernel_env(dirs: Path) -> dict[str, str]:
    """This environment without slmchat's settings, pointed at ``dirs``: offline, no real keychain."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLMCHAT_")}
    env.update(
        SLMCHAT_CONFIG_DIR=str(dirs / "config"),
        SLMCHAT_DATA_DIR=str(dirs / "data"),
        HF_HUB_OFFLINE="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    env.pop("SLMCHAT_KEYRING", None)
    return env


@contextmanager
def running_kernel(dirs: Path, config: str) -> Iterator[Kernel]:
    """A python3 ipykernel on this venv's Python, its slmchat config in ``dirs``; shut down at the end."""
    (dirs / "config").mkdir(parents=True, exist_ok=True)
    (dirs / "config" / "config.toml").write_text(config)
    kernel = Kernel(client=None)

    def record(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        kernel.replies[cell_index] = execute_reply["content"]

    nb = nbformat.v4.new_notebook()
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=True, on_cell_executed=record,
        resources={"metadata": {"path": str(dirs)}},
    )  # fmt: skip
    kernel.client = client
    with client.setup_kernel(env=kernel_env(dirs)):
        where = kernel.run("import sys; print(sys.executable)")
        assert where.stdout.strip() == sys.executable, "the kernel must run this venv's Python"
        yield kernel


@pytest.fixture(scope="module")
def module_kernel(tmp_path_factory: pytest.TempPathFactory, llama_server: str) -> Iterator[Kernel]:
    """One kernel for the module: SmolLM2 answers in 32 tokens, the large tier is a real llama_cpp.server."""
    dirs = tmp_path_factory.mktemp("kernel")
    with running_kernel(dirs, CONFIG.format(small_tokens=32, large_url=llama_server)) as kernel:
        yield kernel


# -- the harness itself (plain cells: these hold whether or not the magic exists) ------------------


def test_the_kernel_gets_the_isolated_dirs_and_no_keychain(module_kernel: Kernel) -> None:
    ran = module_kernel.run(
        "import os\n"
        "print(os.environ['SLMCHAT_CONFIG_DIR'], os.environ['HF_HUB_OFFLINE'], os.environ['PYTHON_KEYRING_BACKEND'])"
    )
    config_dir, offline, keyring = ran.stdout.split()
    assert (Path(config_dir) / "config.toml").read_text().startswith("\n[small]")
    assert (offline, keyring) == ("1", "keyring.backends.fail.Keyring")


def test_a_payload_and_an_updated_display_are_recorded(module_kernel: Kernel) -> None:
    """What the magic's tests rely on: set_next_input reaches the execute_reply, and an updated display
    is recorded once, with its last content and metadata."""
    ran = module_kernel.run(
        "from IPython.display import display, Markdown\n"
        "get_ipython().set_next_input('x = 1')\n"
        "h = display(Markdown('one'), display_id=True)\n"
        "h.update(Markdown('two'), metadata={'slmchat': {'status': 'ok'}})\n"
    )
    assert ran.status == "ok"
    assert [p["source"] for p in ran.payload] == ["set_next_input"]
    assert ran.payload[0]["text"] == "x = 1"
    assert [o["output_type"] for o in ran.outputs] == ["display_data"]
    assert ran.shown() == "two" and ran.stats() == {"status": "ok"}


@pytest.mark.serial
def test_an_interrupt_reaches_a_running_cell(module_kernel: Kernel) -> None:
    def interrupt_once_started(cell: Any) -> None:
        until(lambda: any("started" in o.get("text", "") for o in cell.outputs), 10)
        module_kernel.interrupt()

    ran = module_kernel.run(
        "import time\nprint('started', flush=True)\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
        "    print('interrupted')",
        during=interrupt_once_started,
    )
    assert ran.status == "ok" and "interrupted" in ran.stdout


def test_an_error_in_a_cell_is_an_error_reply(module_kernel: Kernel) -> None:
    ran = module_kernel.run("1 / 0")
    assert ran.status == "error" and ran.reply["ename"] == "ZeroDivisionError"


def until(found: Callable[[], bool], timeout: float) -> None:
    """Poll ``found`` every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not found():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s")
        time.sleep(0.01)


# -- the magic ------------------------------------------------------------------------------------

FOOTER = re.compile(r"<sub>(?P<tier>small|large) · (?P<model>\S+) · (?P<tokens>~?\d+→~?\d+) tok · .*tok/s.*</sub>")


@pytest.fixture
def kernel(module_kernel: Kernel) -> Kernel:
    """The module's kernel with the extension loaded and a new conversation for this test."""
    if not module_kernel.extension_loaded:
        loaded = module_kernel.run("%load_ext slmchat")
        assert loaded.status == "ok" and not loaded.outputs, loaded.outputs
        module_kernel.extension_loaded = True
    reset = module_kernel.run("%slm reset")
    assert reset.stdout.startswith("new conversation"), reset.outputs
    return module_kernel


def test_a_cell_answers_with_a_footer_and_its_stats_in_the_metadata(kernel: Kernel) -> None:
    ran = kernel.run("%%slm\nWhat is the capital of France?")

    assert ran.status == "ok" and [o["output_type"] for o in ran.outputs] == ["display_data"]
    answer, _, footer = ran.shown().partition("\n\n<sub>")
    assert "Paris" in answer and "▌" not in answer  # the streaming cursor is gone once it is done
    assert (found := FOOTER.search("<sub>" + footer)), footer
    assert (found["tier"], found["model"]) == ("small", "llamacpp:smollm2")
    stats = ran.stats()
    assert stats["status"] == "ok" and stats["answer"] == answer
    assert stats["route"]["tier"] == "small" and stats["route"]["model"] == "llamacpp:smollm2"
    assert stats["route"]["score"] < stats["route"]["threshold"]
    usage = stats["usage"]
    assert found["tokens"] == f"{usage['prompt_tokens']}→{usage['completion_tokens']}"
    assert usage["completion_tokens"] > 0 and stats["latency"]["tokens_per_s"] > 0
    assert stats["cost"]["price_source"] == "local"


def test_format_code_puts_the_code_in_the_next_cell(kernel: Kernel) -> None:
    ran = kernel.run("%%slm -f code\nShow me Python code to print hello world.")

    assert ran.status == "ok"
    assert [p["source"] for p in ran.payload] == ["set_next_input"], ran.payload
    assert "print(" in ran.payload[0]["text"] and "```" not in ran.payload[0]["text"]
    assert ran.payload[0]["replace"] is False  # a new cell below, the magic's cell stays


def test_output_sets_a_variable_the_next_cell_reads(kernel: Kernel) -> None:
    ran = kernel.run("%%slm -o ans\nWhat is the capital of France?")
    read = kernel.run("print(type(ans).__name__, 'Paris' in ans)")

    assert ran.stats()["answer"] and read.stdout.split() == ["str", "True"]


def test_a_second_cell_sees_the_first_ones_history(kernel: Kernel) -> None:
    first = kernel.run("%%slm\nMy favourite colour is green.")
    second = kernel.run("%%slm\nWhat is my favourite colour?")
    alone = kernel.run("%%slm --no-history\nWhat is my favourite colour?")
    listed = kernel.run("%slm history")

    # the first exchange went to the model with the second question, and not without history
    grown = second.stats()["usage"]["prompt_tokens"] - alone.stats()["usage"]["prompt_tokens"]
    assert grown >= first.stats()["usage"]["completion_tokens"] + 5
    assert second.stats()["conversation_id"] == first.stats()["conversation_id"]
    lines = listed.stdout.splitlines()
    assert lines[0] == "you: My favourite colour is green." and "you: What is my favourite colour?" in lines


def test_the_large_tier_answers_through_a_real_server(kernel: Kernel, llama_server: str) -> None:
    ran = kernel.run("%%slm -r large\nWhat is the capital of France?")

    stats = ran.stats()
    assert stats["route"]["tier"] == stats["answered_by"] == "large"
    assert stats["route"]["model"] == "openai:smollm2-server" and stats["usage"]["completion_tokens"] > 0
    assert stats["usage"]["estimated"]  # llama_cpp.server streams no usage: counted here, and the footer says ~
    footer = FOOTER.search(ran.shown())
    assert footer and footer["tier"] == "large" and footer["tokens"].startswith("~")
    host = llama_server.removeprefix("http://").removesuffix("/v1")
    assert f"this machine ({host})" in footer[0]  # the server the cell's prompt went to, on this machine


def test_a_bad_option_is_one_line_with_the_fix_and_no_model_call(kernel: Kernel) -> None:
    ran = kernel.run("%%slm -r medium\nWhat is the capital of France?")

    assert ran.status == "ok" and not any(o["output_type"] == "error" for o in ran.outputs)
    error, fix = ran.stdout.strip().splitlines()
    assert error.startswith("error:") and "medium" in error and fix.startswith("  fix:")
    assert kernel.run("%slm history").stdout.startswith("conversation ")  # no exchange was stored


@pytest.mark.serial
def test_an_interrupt_mid_stream_keeps_the_partial_answer(tmp_path: Path, llama_server: str) -> None:
    """Jupyter's stop button while a long answer streams: the cell shows what came, no traceback, and
    the kernel's next cell runs."""
    with running_kernel(tmp_path, CONFIG.format(small_tokens=400, large_url=llama_server)) as own:
        own.run("%load_ext slmchat")

        def interrupt_while_streaming(cell: Any) -> None:
            until(lambda: len(streamed(cell)) > 20, 30)
            own.interrupt()

        ran = own.run("%%slm -r small\nWrite a long story about a dragon.", during=interrupt_while_streaming)
        after = own.run("%slm history")
        nxt = own.run("%%slm\nWhat is the capital of France?")

    assert ran.status == "ok" and not any(o["output_type"] == "error" for o in ran.outputs)
    shown = ran.shown()
    assert "interrupted" in shown and "▌" not in shown
    partial = shown.partition("\n\n*[interrupted")[0]
    assert len(partial) > 20
    history = after.stdout
    assert "you: Write a long story about a dragon." in history
    assert partial[:20] in history  # the partial answer is the turn's answer in the conversation
    assert "Paris" in nxt.stats()["answer"]


def streamed(cell: Any) -> str:
    """The text of the cell's display so far (nbclient updates it in place as updates arrive)."""
    for output in list(cell.outputs):
        text = output.get("data", {}).get("text/markdown", "")
        if text and text != "…":
            return str(text)
    return ""
