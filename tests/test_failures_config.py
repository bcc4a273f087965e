"""Issue 13, the config and model-name cases: each bad input gets one line with its fix.

8b a config file that is not UTF-8; 9a backend options of the wrong type or unknown; 9b a
100 KB model name; 10a an empty model name; 10e a hub GGUF asked for with no network.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.commands import parse_command, run_command
from slmchat.engine.events import Event, ModelFailed
from slmchat.engine.session import Session
from slmchat.engine.tiers import Tiers
from slmchat.infra import paths
from slmchat.infra.backends import parse_model_name
from slmchat.infra.backends.llamacpp import LlamaCppBackend, resolve_model_path
from slmchat.infra.backends.options import check_options
from slmchat.infra.config import Config, TierConfig, load_config
from slmchat.infra.errors import ConfigError, ModelNotFound
from tests.helpers import free_port, slmchat, write_config

HUB_NAME = "someone/some-repo-GGUF/model-Q4_K_M.gguf"


def _one_error(result: subprocess.CompletedProcess) -> str:
    """The error a failed CLI run printed: exit 1, no traceback, not "unexpected"; returns stderr."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr, result.stderr
    return result.stderr


# -- 8b: a config file that is not UTF-8 ----------------------------------------------------


def _latin1_config() -> Path:
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'route = "auto"\n[small]\n# caf\xe9 au lait\nmodel = "llamacpp:smollm2"\n')
    return path


@pytest.mark.parametrize("command", [("ask", "hi"), ("config", "show")])
def test_a_config_that_is_not_utf8_names_the_byte_and_line(command: tuple[str, ...]) -> None:
    path = _latin1_config()
    stderr = _one_error(slmchat(*command))
    assert f"{path} is not UTF-8 text (byte 0xe9 at line 3)" in stderr
    assert "save it as UTF-8, or move it away and run `slmchat config init`" in stderr


def test_doctor_diagnoses_a_config_that_is_not_utf8_and_runs_the_other_checks() -> None:
    path = _latin1_config()
    result = slmchat("doctor")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index(f"FAIL  config: {path} is not UTF-8 text (byte 0xe9 at line 3)")
    assert lines[at + 1] == "      fix: save it as UTF-8, or move it away and run `slmchat config init`"
    # the rest still ran, on the defaults
    checked = {line[6:].split(":")[0] for line in lines if not line.startswith(" ")}
    assert {"history", "small tier", "large tier", "tools", "memory"} <= checked, result.stdout
    assert "ok    small tier: llamacpp:smollm2" in lines


# -- 9a: backend options, typed per backend -------------------------------------------------


def test_an_option_of_the_wrong_type_names_file_key_type_and_value() -> None:
    write_config(paths.config_dir().parent, '[small]\nmodel = "llamacpp:smollm2"\noptions = { n_ctx = "big" }\n')
    stderr = _one_error(slmchat("ask", "hi"))
    expected = f"invalid configuration: {paths.config_file()}: small.options.n_ctx: Input should be a valid integer"
    assert f"{expected} (got 'big')" in stderr
    assert "docs/backends.md" in stderr


def test_an_unknown_option_is_an_error_that_lists_the_known_ones() -> None:
    write_config(paths.config_dir().parent, '[small]\nmodel = "llamacpp:smollm2"\noptions = { n_ctxx = 4096 }\n')
    stderr = _one_error(slmchat("config", "show"))
    assert "small.options.n_ctxx: unknown option 'n_ctxx' for the llamacpp backend; known: n_ctx, n_threads," in stderr


def test_an_option_set_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMCHAT_SMALL__OPTIONS__N_THREADS", "0")
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = caught.value.message
    assert message.startswith("invalid configuration: SLMCHAT_SMALL__OPTIONS__N_THREADS: small.options.n_threads:")
    assert "greater than 0 (got 0)" in message


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("openai:gpt-4o-mini", 'tool_mode = "grammar"', "large.options.tool_mode: Input should be 'native'"),
        ("openai:gpt-4o-mini", "max_retries = -1", "large.options.max_retries: Input should be greater than"),
        ("mlx:mlx-community/x", 'trust_remote_code = "yes"', "large.options.trust_remote_code: Input should be a"),
        ("fast", "num_ctx = 8192", "unknown option 'num_ctx' for the ollama backend; it takes none"),
    ],
)
def test_each_backend_checks_its_own_options(model: str, options: str, expected: str) -> None:
    """The backend comes from the model name, through an alias too ("fast" is an Ollama model)."""
    toml = f'[large]\nmodel = "{model}"\noptions = {{ {options} }}\n[aliases]\nfast = "ollama:llama3.2:3b"\n'
    write_config(paths.config_dir().parent, toml)
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_config()
    assert expected in caught.value.message


def test_good_options_pass_and_reach_llama_cpp() -> None:
    assert check_options("llamacpp", {"n_ctx": 512, "n_threads": 2, "n_batch": 64, "n_gpu_layers": 0}) == []
    backend = LlamaCppBackend("smollm2", {"n_ctx": 512, "n_batch": 64, "base_url": None, "timeout_s": 60.0})
    asyncio.run(backend.load())
    try:
        assert backend.context_tokens == 512  # was only n_ctx and n_threads; n_batch was dropped
        assert backend.llama.n_batch == 64
    finally:
        asyncio.run(backend.aclose())


def test_options_are_checked_without_importing_the_backend(tmp_path: Path) -> None:
    write_config(tmp_path, '[small]\nmodel = "llamacpp:smollm2"\noptions = { n_ctx = 4096 }\n')
    script = (
        "import sys; from slmchat.infra.config import load_config; load_config(); print('llama_cpp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "'llama_cpp'" not in result.stdout and "'mlx'" not in result.stdout and "'openai'" not in result.stdout


def test_a_config_built_in_code_is_checked_before_the_model_loads() -> None:
    """Library users skip load_config: the tier checks its options before creating the backend."""
    config = Config(small=TierConfig(model="llamacpp:smollm2", options={"n_ctx": "big"}))
    events: list[Event] = []
    tiers = Tiers(config, None, events.append)
    with pytest.raises(ConfigError, match=r"small.options.n_ctx: Input should be a valid integer \(got 'big'\)"):
        asyncio.run(tiers.backend("small"))
    assert isinstance(events[-1], ModelFailed) and "n_ctx" in events[-1].error


# -- 9b: very long model names and values ---------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 100_000, "llamacpp:" + "y" * 100_000], ids=["bare", "llamacpp"])
def test_a_100kb_model_name_is_refused_in_one_short_line(name: str) -> None:
    result = slmchat("ask", "-m", name, "hi")
    stderr = _one_error(result)
    assert len(stderr.encode()) < 300, stderr[:400]
    assert "the model name is too long: 100" in stderr


def test_messages_quote_long_names_shortened() -> None:
    with pytest.raises(ModelNotFound) as caught:
        parse_model_name("nosuch:" + "z" * 900)
    assert len(str(caught.value)) < 250 and "… (907 characters)" in caught.value.message
    # a name too long for the filesystem to look up is just a missing file, not an OSError
    with pytest.raises(ModelNotFound, match="model file not found"):
        resolve_model_path("m" * 400 + ".gguf")


def test_models_lists_a_tier_with_a_too_long_name_in_a_short_line() -> None:
    result = slmchat("models", env={"SLMCHAT_SMALL__MODEL": "llamacpp:" + "q" * 5000})
    assert result.returncode == 0, result.stderr
    small = result.stdout.splitlines()[0]
    assert small.startswith("small  llamacpp:qqq") and "… (5009 characters): the model name is too long" in small
    assert len(small) < 250


def test_a_hub_name_the_hub_cannot_have_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFound) as caught:  # was "unexpected error: HFValidationError"
        resolve_model_path("o/" + "r" * 200 + "/model.gguf")
    assert "is not a Hugging Face file name: the repo id" in caught.value.message
    assert len(caught.value.message) < 300


def test_a_long_config_value_is_shortened_in_the_error() -> None:
    write_config(paths.config_dir().parent, f'route = "{"r" * 100_000}"\n')
    stderr = _one_error(slmchat("config", "show"))
    assert len(stderr.encode()) < 400 and "route: String should match pattern" in stderr
    assert "… (100000 characters)" in stderr


# -- 10a: an empty model name ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_model_option_is_an_error(name: str) -> None:
    stderr = _one_error(slmchat("ask", "-m", name, "hi"))
    assert "the model name is empty" in stderr and "or leave out -m" in stderr


def test_an_empty_model_in_the_config_is_an_error() -> None:
    write_config(paths.config_dir().parent, '[small]\nmodel = ""\n')
    stderr = _one_error(slmchat("ask", "hi"))
    assert "error: the model name is empty" in stderr and "give backend:model, e.g. llamacpp:smollm2" in stderr


@pytest.mark.parametrize("typed", ['/model ""', "/model ''"])
def test_model_command_with_an_empty_name_is_an_error(typed: str) -> None:
    async def scenario() -> None:
        session = Session(Config())
        try:
            command = parse_command(typed)
            result = await run_command(session, command)  # type: ignore[arg-type]
            assert not result.ok and result.message == "the model name is empty"
            assert session.model_name("small") == "llamacpp:smollm2"  # unchanged
        finally:
            await session.aclose()

    asyncio.run(scenario())


def test_an_alias_to_an_empty_name_is_an_error() -> None:
    with pytest.raises(ModelNotFound, match="the model name is empty"):
        parse_model_name("fast", {"fast": ""})


# -- 10e: a hub GGUF with no network --------------------------------------------------------


def _no_hub(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine whose hub does not answer: a loopback port nobody listens on."""
    return {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}


def test_a_hub_model_with_no_network_fails_fast_and_says_offline(tmp_path: Path) -> None:
    stderr = _one_error(slmchat("ask", "-m", f"llamacpp:{HUB_NAME}", "hi", env=_no_hub(tmp_path)))
    assert f"{HUB_NAME} is not in the local cache and the hub cannot be reached (offline?)" in stderr
    assert "Retrying" not in stderr  # huggingface_hub's five retries with back-off, ~24 s, are gone
    # the lookup alone, timed in a fresh process (huggingface_hub reads HF_* when imported)
    script = (
        "import time; from slmchat.infra.backends.llamacpp import resolve_model_path\n"
        "started = time.monotonic()\n"
        f"try: resolve_model_path({HUB_NAME!r})\n"
        "except Exception as exc: print(type(exc).__name__, time.monotonic() - started)\n"
    )
    env = {**os.environ, **_no_hub(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    kind, took = result.stdout.split()
    assert kind == "ModelNotFound" and float(took) < 5, result.stdout + result.stderr


def test_a_cached_hub_model_is_used_without_asking_the_hub(tmp_path: Path) -> None:
    env = _no_hub(tmp_path)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(env["HF_HOME"]) / "hub" / "models--someone--some-repo-GGUF"
    cached = repo / "snapshots" / commit / "model-Q4_K_M.gguf"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really a GGUF file")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    stderr = _one_error(slmchat("ask", "-m", f"llamacpp:{HUB_NAME}", "hi", env=env))
    assert f"llama.cpp could not load {cached}" in stderr  # the cached file was found, offline
