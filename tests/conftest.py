"""Shared fixtures: isolated config and data dirs, a network guard, the real small model."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# llama.cpp's OpenMP threads sleep, not spin, between parallel regions. Set before anything loads
# llama.cpp (libgomp reads it once, when loaded); the model processes the tests start inherit it.
# The suite runs two test processes (pytest -n 2, README) beside model servers on two cores: spinning
# threads then take the cores from the ones with work, and one 1,000-token prompt took 39 s instead of
# 11 s (two at once, load 3.5). It changes when threads wait, not what they compute: answers are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # unix sockets and the like
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):  # type: ignore[no-untyped-def]
    def connect(self, address):  # type: ignore[no-untyped-def]
        if not _is_local(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to something other than loopback fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _guarded(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own config and data dirs and a clean SLMCHAT_* environment."""
    import os

    for key in list(os.environ):
        if key.startswith("SLMCHAT_") or key in ("OLLAMA_HOST", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SLMCHAT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SLMCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # never touch the developer's real keychain; tests that need a key store inject one
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("SLMCHAT_KEYRING", raising=False)
    yield tmp_path


@pytest.fixture(autouse=True)
def no_memory_by_default(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions get no long-term memory unless the test is marked ``@pytest.mark.memory``
    (or passes a ``Memory`` itself): recall and fact extraction would change every answer.
    ``tests.helpers.slmchat`` does the same for a CLI in a subprocess."""
    if request.node.get_closest_marker("memory") is None:
        monkeypatch.setattr("slmchat.engine.session.Memory", lambda config: None)


@pytest.fixture(autouse=True)
def no_installed_tools(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins installed in this Python (CI installs plugins/) stay out of tests that did not ask.

    Mark a test ``@pytest.mark.plugins`` to see the real installed tools. (``tests.helpers.slmchat``
    does the same for a CLI in a subprocess, through the config's ``tools.enabled``.)
    """
    if request.node.get_closest_marker("plugins") is None:
        monkeypatch.setattr("slmchat.tools.registry.ENTRY_POINT_GROUP", "slmchat.tools.none-in-this-test")


# -- real models and servers ---------------------------------------------------------------

import asyncio  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from tests.helpers import free_port, serve, wait_until  # noqa: E402, F401  (fixtures below use them)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from slmchat.infra.backends.llamacpp import resolve_model_path

    return resolve_model_path("smollm2")


@pytest.fixture(scope="session")
def small_backend():  # type: ignore[no-untyped-def]
    """The real SmolLM2-135M model in llama.cpp, loaded once for the whole test run."""
    from slmchat.infra.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend("smollm2", {"n_ctx": 2048})
    asyncio.run(backend.load())
    return backend


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real `python -m llama_cpp.server` on 127.0.0.1 serving SmolLM2, as a large tier would be."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2-server"]  # fmt: skip
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(command, url + "/models", log, {"HF_HUB_OFFLINE": "1"}, timeout=90):
        yield url


# -- tests that need ../shared/data ----------------------------------------------------------
#
# Locally a missing ../shared/data skips those tests. In CI (CI=true; .ci/run sets it) it must
# not: a skip there would pass a run that checked nothing, so the skip becomes a failure.

from tests.helpers import SHARED_DATA  # noqa: E402

_SHARED_DATA_MENTIONS = (str(SHARED_DATA), os.path.join("shared", "data"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared_data("bfcl/questions", ...)``: skip unless each path is under ../shared/data."""
    for mark in item.iter_markers("shared_data"):
        missing = [SHARED_DATA / part for part in mark.args or (".",) if not (SHARED_DATA / part).exists()]
        if missing:
            pytest.skip(f"shared data not found: {', '.join(map(str, missing))}")


def _skip_reason(report: pytest.TestReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """In CI, a skip for missing shared data (the marker's, or a skipif naming the folder) or a missing
    test dependency (``pytest.importorskip``) fails: a run that checked nothing must not pass."""
    report = yield
    if not _in_ci() or not report.skipped or hasattr(report, "wasxfail"):
        return report
    reason = _skip_reason(report)
    if any(mention in reason for mention in _SHARED_DATA_MENTIONS):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true and this test needs {SHARED_DATA}, so it must run, not skip.\n"
            f"It was skipped: {reason}\nPut the shared data beside the checkout (../shared/data)."
        )
    elif reason.startswith("could not import"):  # pytest.importorskip: the test extra installs these
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true and the test extra installs what this test imports, so it must run, not skip.\n"
            f"It was skipped: {reason}\nCheck the install step of .ci/run (pip install -e '.[test]')."
        )
    return report


def _chroma_executable() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.is_file() else shutil.which("chroma")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `chroma run` on 127.0.0.1, telemetry off, stopped at the end."""
    executable = _chroma_executable()
    if executable is None:
        pytest.skip("the chroma executable (chromadb's CLI) is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [executable, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)]
    env = {"ANONYMIZED_TELEMETRY": "False"}
    with serve(command, url + "/api/v2/heartbeat", tmp_path / "chroma.log", env, timeout=30) as proc:
        yield url, proc


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a hung endpoint."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
