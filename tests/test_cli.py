"""`slmchat` as a user runs it: a real process, the real model, and every error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, slmchat, write_config


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_ask_json_answers_with_the_embedded_model() -> None:
    result = slmchat("ask", "What is the capital of France?", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "Paris" in data["answer"]
    route = data["route"]
    assert route["tier"] == route["wanted"] == "small" and route["model"] == "llamacpp:smollm2"
    assert route["reason"].startswith("small: ") and route["override"] is None
    assert 0 <= route["score"] < route["threshold"] <= 1
    assert set(route["factors"]) >= {"length", "requirements", "domain_breadth", "tool_needs", "reasoning_depth"}
    assert data["usage"]["prompt_tokens"] > 10 and data["usage"]["completion_tokens"] > 0
    assert data["usage"]["estimated"] is False
    assert data["latency"]["ttft_ms"] > 0 and data["latency"]["total_ms"] >= data["latency"]["ttft_ms"]
    assert data["latency"]["tokens_per_s"] > 0
    assert all(round(value, 1) == value for value in data["latency"].values() if value is not None)
    assert len(data["conversation_id"]) == 12
    documented = _documented_ask_json()  # the docs say "exactly these fields": they must be the real ones
    assert list(data) == list(documented)
    for name in ("route", "usage", "latency", "cost"):  # memory is off in tests unless marked
        assert set(data[name]) == set(documented[name]), name


def _documented_ask_json() -> dict:
    """The `ask --json` example in docs/getting-started.md."""
    text = (Path(__file__).parents[1] / "docs" / "getting-started.md").read_text()
    block = text.split("The `--json` output is one JSON object", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_ask_streams_text_reads_stdin_and_continues(tmp_path: Path) -> None:
    first = slmchat("ask", stdin="Say hello.\n")
    assert first.returncode == 0 and first.stdout.strip()
    second = slmchat("ask", "--continue", "--json", "Say it again.")
    listing = slmchat("history", "list")
    assert listing.stdout.count("turns") == 1 and " 2 turns" in listing.stdout
    assert json.loads(second.stdout)["conversation_id"] in listing.stdout


def test_piped_text_is_added_after_the_question(tmp_path: Path) -> None:
    result = slmchat("ask", "--json", "Repeat this word:", stdin="banana\n")
    assert result.returncode == 0, result.stderr
    turn = json.loads(slmchat("history", "export", "--format", "json").stdout)["turns"][0]
    assert turn["user"] == "Repeat this word:\n\nbanana"


def test_history_show_and_export(tmp_path: Path) -> None:
    slmchat("ask", "--json", "Name a colour.")
    shown = slmchat("history", "show")
    assert "**You:**" in shown.stdout and "Name a colour." in shown.stdout
    out = tmp_path / "conv.json"
    exported = slmchat("history", "export", "--format", "json", "-o", str(out))
    assert exported.returncode == 0
    turn = json.loads(out.read_text())["turns"][0]
    assert turn["user"] == "Name a colour." and turn["status"] == "ok" and turn["usage"]["completion_tokens"] > 0
    assert_clean_error(slmchat("history", "show", "nosuchid"), "no conversation with id 'nosuchid'")


def test_history_with_nothing_stored_says_so() -> None:
    assert slmchat("history", "list").stdout.strip() == "no conversations yet"
    assert_clean_error(slmchat("history", "export"), "no conversations yet")


def test_config_path_init_and_show(tmp_path: Path) -> None:
    path = slmchat("config", "path").stdout.strip()
    assert path == str(tmp_path / "config" / "config.toml")
    assert slmchat("config", "init").returncode == 0 and Path(path).exists()
    assert_clean_error(slmchat("config", "init"), "already exists", "--force")
    shown = json.loads(slmchat("config", "show", env={"SLMCHAT_SMALL__MAX_TOKENS": "64"}).stdout)
    assert shown["small"]["model"] == "llamacpp:smollm2" and shown["small"]["max_tokens"] == 64


def test_missing_model_file_is_one_clear_line(tmp_path: Path) -> None:
    result = slmchat("ask", "--model", f"llamacpp:{tmp_path}/nope.gguf", "hi")
    assert_clean_error(result, "model file not found", "fix:")
    assert len(result.stderr.strip().splitlines()) == 2


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = slmchat("--debug", "ask", "--model", f"llamacpp:{tmp_path}/nope.gguf", "hi")
    assert result.returncode != 0 and "Traceback" in result.stderr and "ModelNotFound" in result.stderr


def test_unknown_backend_in_model_name() -> None:
    assert_clean_error(slmchat("ask", "--model", "gpt4", "hi"), "has no backend", "backend:model")


def test_invalid_config_names_file_key_and_expectation(tmp_path: Path) -> None:
    write_config(tmp_path, '[small]\nmodel = "llamacpp:smollm2"\nmax_tokens = "lots"\ncolour = 1\n')
    result = slmchat("ask", "hi")
    assert_clean_error(
        result,
        str(tmp_path / "config" / "config.toml"),
        "small.max_tokens",
        "valid integer",
        "small.colour: unknown key",
    )


def test_invalid_toml_and_bad_environment_override(tmp_path: Path) -> None:
    write_config(tmp_path, "[small\n")
    assert_clean_error(slmchat("ask", "hi"), "is not valid TOML")
    write_config(tmp_path, "")
    result = slmchat("ask", "hi", env={"SLMCHAT_SMALL__TEMPERATURE": "9"})
    assert_clean_error(result, "SLMCHAT_SMALL__TEMPERATURE: small.temperature")


def test_unreachable_ollama_host(tmp_path: Path) -> None:
    port = free_port()
    result = slmchat("ask", "--model", "ollama:llama3.2:3b", "hi", env={"OLLAMA_HOST": f"http://127.0.0.1:{port}"})
    assert_clean_error(result, "cannot reach Ollama", f"127.0.0.1:{port}", "ollama serve")


def test_refused_large_tier_endpoint(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, f'[large]\nmodel = "openai:big"\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    assert_clean_error(slmchat("ask", "--route", "large", "hi"), "cannot reach", f"127.0.0.1:{port}")


def test_timed_out_large_tier_endpoint(tmp_path: Path, silent_server: int) -> None:
    write_config(
        tmp_path,
        f'[large]\nmodel = "openai:big"\nbase_url = "http://127.0.0.1:{silent_server}/v1"\ntimeout_s = 1\n',
    )
    assert_clean_error(slmchat("ask", "--route", "large", "hi"), "did not answer within 1 s", "timeout_s")


def test_nothing_stored_is_lost_by_a_failure(tmp_path: Path) -> None:
    ok = json.loads(slmchat("ask", "--json", "Say hello.").stdout)
    port = free_port()
    write_config(tmp_path, f'[large]\nmodel = "openai:big"\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    assert slmchat("ask", "--continue", "--route", "large", "hi").returncode == 1
    data = json.loads(slmchat("history", "export", "--format", "json").stdout)
    assert data["conversation_id"] == ok["conversation_id"]
    assert [t["status"] for t in data["turns"]] == ["ok", "failed"]
    assert data["turns"][0]["answer"] == ok["answer"]


def test_nothing_to_ask() -> None:
    assert_clean_error(slmchat("ask", stdin=""), "nothing to ask")


def test_doctor_reports_each_part(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, f'[large]\nmodel = "openai:big"\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    result = slmchat("doctor", env={"OLLAMA_HOST": f"127.0.0.1:{free_port()}"})
    out = result.stdout
    assert "ok    llama.cpp: llama-cpp-python" in out
    assert "ok    default model:" in out and "SmolLM2-135M-Instruct" in out
    assert "ok    small tier: llamacpp:smollm2" in out
    assert "FAIL  large tier: openai:big: cannot reach" in out
    assert "warn  ollama: no Ollama server" in out and "ollama serve" in out
    assert "ok    tools: none (install a plugin" in out  # tests turn installed plugins off
    assert "ok    memory: off ([memory] enabled = false)" in out
    assert result.returncode == 1
    missing = slmchat("doctor", env={"SLMCHAT_TOOLS__ENABLED": '["no_such_tool"]'}).stdout
    assert "warn  tools: none" in missing and "tool no_such_tool is enabled in the config but not installed" in missing


def test_doctor_with_a_working_large_tier(tmp_path: Path, llama_server: str) -> None:
    write_config(tmp_path, f'[large]\nmodel = "openai:smollm2-server"\nbase_url = "{llama_server}"\n')
    result = slmchat("doctor", env={"OLLAMA_HOST": f"127.0.0.1:{free_port()}"})
    assert "ok    large tier: openai:smollm2-server" in result.stdout
    assert result.returncode == 0, result.stdout


def test_doctor_checks_an_ollama_tiers_model(tmp_path: Path) -> None:
    from fake_ollama import FakeOllama

    with FakeOllama(models=("llama3.2:3b",)) as server:
        write_config(tmp_path, f'[small]\nmodel = "ollama:llama3.2:3b"\nbase_url = "{server.url}"\n')
        assert "ok    small tier: ollama:llama3.2:3b: Ollama 0.5.1 at" in slmchat("doctor").stdout
        write_config(tmp_path, f'[small]\nmodel = "ollama:qwen3:8b"\nbase_url = "{server.url}"\n')
        result = slmchat("doctor")
    assert "FAIL  small tier: ollama:qwen3:8b: Ollama 0.5.1 at" in result.stdout
    assert "ollama pull qwen3:8b" in result.stdout and result.returncode == 1


@pytest.mark.serial
def test_ctrl_c_stops_ask_and_keeps_the_partial_answer(tmp_path: Path) -> None:
    import signal

    write_config(tmp_path, '[small]\nmodel = "llamacpp:smollm2"\nmax_tokens = 2000\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmchat", "ask", "Write a very long story about a dragon who learns to cook."],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false"},
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.read(20)  # the answer has started streaming
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"[interrupted: the partial answer is saved]" in err and b"Traceback" not in err
    turn = json.loads(slmchat("history", "export", "--format", "json").stdout)["turns"][0]
    assert turn["status"] == "interrupted"
    assert turn["answer"].startswith(first.decode(errors="ignore")[:10])
    assert turn["usage"]["completion_tokens"] < 2000


def test_doctor_checks_the_embedding_model() -> None:
    assert "ok    embedding: all-MiniLM-L6-v2-onnx-int8" in slmchat("doctor").stdout


# -- llm's spellings: -m, -s, -c, --cid; --json on every list; bad input is one line -----------------


@pytest.fixture
def ollama():  # type: ignore[no-untyped-def]
    """A fake Ollama (tests/fake_ollama.py) that answers "Hello, world!", and the env pointing at it."""
    from fake_ollama import FakeOllama

    with FakeOllama(models=("llama3.2:3b",)) as server:
        yield server, {"OLLAMA_HOST": server.host_port}


def sent_system(server) -> str:  # type: ignore[no-untyped-def]
    """The system message of the last chat request the fake Ollama received."""
    messages = server.requests_to("/api/chat")[-1].body["messages"]
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


def test_ask_takes_m_and_s_and_the_system_prompt_reaches_the_model(ollama) -> None:  # type: ignore[no-untyped-def]
    server, env = ollama
    result = slmchat("ask", "-m", "ollama:llama3.2:3b", "-s", "Answer like a pirate.", "--json", "hi", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "Hello, world!" and data["route"]["model"] == "ollama:llama3.2:3b"
    assert sent_system(server) == "Answer like a pirate."
    assert slmchat("ask", "--model", "ollama:llama3.2:3b", "hi", env=env).stdout == "Hello, world!\n"
    assert sent_system(server) == "You are a helpful assistant. Answer clearly and concisely."  # the config's


def test_ask_c_and_cid_continue_and_the_old_spellings_still_work(ollama) -> None:  # type: ignore[no-untyped-def]
    _server, env = ollama

    def ask(*args: str) -> str:
        result = slmchat("ask", "-m", "ollama:llama3.2:3b", "--json", *args, "hi", env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["conversation_id"]

    first, second = ask(), ask()
    assert first != second
    assert ask("-c") == ask("--continue") == second
    assert ask("--cid", first[:6]) == ask("--conversation", first) == first
    assert ask("-c", "--cid", first) == first  # --cid names one: it wins over "the latest"
    assert ask("--new") not in (first, second)
    turns = {row["id"]: row["turns"] for row in json.loads(slmchat("history", "list", "--json").stdout)}
    assert turns[first] == 4 and turns[second] == 3


def test_the_chat_takes_m_s_and_cid(ollama) -> None:  # type: ignore[no-untyped-def]
    server, env = ollama
    asked = json.loads(slmchat("ask", "-m", "ollama:llama3.2:3b", "--json", "hi", env=env).stdout)
    cid = asked["conversation_id"]
    result = slmchat(
        "-m", "ollama:llama3.2:3b", "-s", "Be brief.", "--cid", cid, stdin="/model\nhello again\n/quit\n", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "small: ollama:llama3.2:3b" in result.stdout and "Hello, world!" in result.stdout
    assert sent_system(server) == "Be brief."
    messages = server.requests_to("/api/chat")[-1].body["messages"]
    assert [m["content"] for m in messages[1:]] == ["hi", "Hello, world!", "hello again"]  # the conversation went on


def test_bad_session_options_are_one_clear_line(ollama, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _server, env = ollama
    unknown = slmchat("ask", "--cid", "nosuchid", "hi")
    assert_clean_error(unknown, "no conversation with id 'nosuchid'", "slmchat history list")
    assert len(unknown.stderr.strip().splitlines()) == 2
    assert_clean_error(slmchat("--cid", "nosuchid", stdin="/quit\n"), "no conversation with id 'nosuchid'")
    assert_clean_error(slmchat("ask", "--new", "--cid", "abc", "hi"), "--new and --cid contradict each other")
    assert_clean_error(slmchat("ask", "-m", "foo:bar", "hi"), "unknown backend 'foo'", "llamacpp, ollama, mlx, openai")
    assert_clean_error(slmchat("-m", "foo:bar", stdin="/quit\n"), "unknown backend 'foo'")
    misplaced = slmchat("-m", "ollama:llama3.2:3b", "ask", "hi", env=env)
    assert_clean_error(misplaced, "before `ask` are options of the chat", "slmchat ask -m NAME")


def test_stats_refuses_json_with_csv() -> None:
    result = slmchat("stats", "--json", "--csv")
    assert_clean_error(result, "--json and --csv cannot be used together", "fix: ")
    assert result.stdout == ""


def test_list_commands_print_json(ollama, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _server, env = ollama
    assert json.loads(slmchat("history", "list", "--json").stdout) == []
    cid = json.loads(slmchat("ask", "-m", "ollama:llama3.2:3b", "--json", "Name a colour.", env=env).stdout)[
        "conversation_id"
    ]
    [row] = json.loads(slmchat("history", "list", "--json").stdout)
    assert row["id"] == cid and row["turns"] == 1 and row["title"] == "Name a colour."
    assert row["updated_at"] >= row["created_at"] > 0
    keys = json.loads(slmchat("keys", "list", "--json", env={"OPENAI_API_KEY": "sk-test-1234567890abcdef"}).stdout)
    openai = next(k for k in keys if k["provider"] == "openai")
    assert openai["source"] == "env OPENAI_API_KEY" and "1234567890" not in openai["masked"]
    assert next(k for k in keys if k["provider"] == "anthropic") == {
        "provider": "anthropic",
        "source": "none",
        "masked": "",
    }


def test_tools_list_shows_signatures_approval_and_problems(tmp_path: Path) -> None:
    (tmp_path / "my_tools.py").write_text(
        "from slmchat.tools import tool\n\n"
        "def add(a: int, b: int = 2) -> int:\n    '''Add two whole numbers.'''\n    return a + b\n\n"
        "@tool(requires_approval=True)\n"
        "def read_note(name: str) -> str:\n    '''Read the user's saved note with this name.'''\n    return name\n"
    )
    env = {
        "PYTHONPATH": str(tmp_path),
        "SLMCHAT_TOOLS__ENABLED": '["my_tools:add", "my_tools:read_note", "no_such_tool"]',
    }
    data = json.loads(slmchat("tools", "list", "--json", env=env).stdout)
    assert data["tools"] == [
        {"name": "add", "signature": "add(a: int, b: int = 2) - Add two whole numbers",
         "requires_approval": False, "approval": "none"},
        {"name": "read_note", "signature": "read_note(name: str) - Read the user's saved note with this name",
         "requires_approval": True, "approval": "ask"},
    ]  # fmt: skip
    [problem] = data["problems"]
    assert problem.startswith("tool no_such_tool is enabled in the config but not installed (installed: ")
    text = slmchat("tools", "list", env={**env, "SLMCHAT_TOOLS__APPROVE": "never"})
    assert text.stdout.splitlines() == [
        "add(a: int, b: int = 2) - Add two whole numbers",
        "read_note(name: str) - Read the user's saved note with this name  (never runs: tools.approve = never)",
    ]
    assert text.stderr.startswith("warning: tool no_such_tool is enabled")
    assert slmchat("tools", "list").stdout == "no tools enabled (install a plugin: see docs/tools.md)\n"


def test_ask_prints_the_tool_loops_answer_when_it_replaces_what_streamed(capsys: pytest.CaptureFixture[str]) -> None:
    """A reply that mixed text and a call streamed both; the stored answer replaces them on stdout."""
    import asyncio

    from slmchat.faces.cli.ask import run_turn
    from slmchat.testing import scripted_session
    from slmchat.tools import Toolbox

    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    call = 'Sure! {"tool": "add", "arguments": {"a": 2, "b": 3}}'
    session = scripted_session([call, "It is 5."], tools=Toolbox().add(add))
    assert asyncio.run(run_turn(session, "What is 2 + 3?", None, False, tools=True)) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\nIt is 5.\n") and out.startswith("Sure! ")
    assert "[tool add(" in err and "[→ 5 (" in err
