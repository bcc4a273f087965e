"""A planted API key must appear nowhere slmchat writes: files, output, events, errors."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.test_cli import slmchat, write_config
from tests.test_keys import assert_key_absent

KEY = "sk-planted-0123456789abcdefXYZ"


def test_a_planted_key_never_leaves_the_environment(tmp_path: Path, llama_server: str) -> None:
    env = {"MY_LARGE_KEY": KEY, "OPENAI_API_KEY": KEY}
    write_config(
        tmp_path,
        f'[large]\nmodel = "openai:smollm2-server"\nbase_url = "{llama_server}"\napi_key_env = "MY_LARGE_KEY"\n'
        "max_tokens = 8\n",
    )
    outputs = [
        slmchat("ask", "--json", "--route", "large", "What is 2 + 2?", env=env),
        slmchat("ask", "--json", "Hi", env=env),
        slmchat(
            "--debug", "ask", "--route", "large", "hi", env={**env, "SLMCHAT_LARGE__BASE_URL": "http://127.0.0.1:1/v1"}
        ),
        slmchat(
            "ask",
            "--route",
            "large",
            "hi",
            env={**env, "SLMCHAT_LARGE__BASE_URL": f"http://127.0.0.1:{free_port()}/v1"},
        ),
        slmchat("history", "export", "--format", "json", env=env),
        slmchat("config", "show", env=env),
        slmchat("keys", "list", env=env),
        slmchat("doctor", env=env),
    ]
    assert outputs[0].returncode == 0, outputs[0].stderr
    assert outputs[3].returncode == 1  # the failing turn happened, and was stored
    for result in outputs:
        assert KEY not in result.stdout and KEY not in result.stderr, result.args
    assert "openai      env OPENAI_API_KEY  sk-…fXYZ" in outputs[6].stdout  # masked: the last 4 characters only
    assert_key_absent(tmp_path, KEY)  # config dir, data dir (SQLite, WAL), REPL history, caches
