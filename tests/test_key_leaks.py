"""A planted API key must appear nowhere slmchat writes: files, output, events, errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_key_absent, free_port, slmchat, write_config

KEY = "sk-planted-0123456789abcdefXYZ"


def test_a_planted_key_never_leaves_the_environment(tmp_path: Path, llama_server: str) -> None:
    env = {"MY_LARGE_KEY": KEY, "OPENAI_API_KEY": KEY}
    write_config(
        tmp_path,
        f'[large]\nmodel = "openai:smollm2-server"\nbase_url = "{llama_server}"\napi_key_env = "MY_LARGE_KEY"\n'
        "max_tokens = 8\n",
    )
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    on_large = slmchat("ask", "--json", "--route", "large", "What is 2 + 2?", env=env)
    on_small = slmchat("ask", "--json", "Hi", env=env)
    refused_debug = slmchat(
        "--debug", "ask", "--route", "large", "hi", env={**env, "SLMCHAT_LARGE__BASE_URL": "http://127.0.0.1:1/v1"}
    )
    refused = slmchat("ask", "--route", "large", "hi", env={**env, "SLMCHAT_LARGE__BASE_URL": closed})
    exported = slmchat("history", "export", "--format", "json", env=env)
    shown = slmchat("config", "show", env=env)
    listed = slmchat("keys", "list", env=env)
    doctor = slmchat("doctor", env=env)
    outputs = [on_large, on_small, refused_debug, refused, exported, shown, listed, doctor]
    for result in outputs:
        assert KEY not in result.stdout and KEY not in result.stderr, result.args

    # each command did what it was asked, so the output searched above is the real one (a command that
    # failed early would print nothing, and leak nothing, whatever the code does with keys)
    for result, tier in [(on_large, "large"), (on_small, "small")]:
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        answer = json.loads(result.stdout)
        assert (answer["status"], answer["answered_by"], answer["route"]["tier"]) == ("ok", tier, tier)
        assert answer["answer"].strip()
    assert (refused_debug.returncode, refused_debug.stdout) == (1, "")
    assert "Traceback" in refused_debug.stderr  # --debug shows it, with the error's own words
    assert "BackendUnavailable: cannot reach http://127.0.0.1:1/v1" in refused_debug.stderr
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == f"error: cannot reach {closed}\n  fix: check base_url and that the server is running\n"

    assert (exported.returncode, exported.stderr) == (0, ""), exported.stderr
    (failed,) = json.loads(exported.stdout)["turns"]  # the last conversation: the failing turn, stored
    assert (failed["user"], failed["status"], failed["error"]) == ("hi", "failed", f"cannot reach {closed}")
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    large = json.loads(shown.stdout)["large"]
    assert (large["base_url"], large["api_key_env"]) == (llama_server, "MY_LARGE_KEY")  # the name, not the key
    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
    assert "openai      env OPENAI_API_KEY  sk-…fXYZ" in listed.stdout  # masked: the last 4 characters only
    assert doctor.returncode == 0, doctor.stdout
    assert f"ok    large tier: openai:smollm2-server at {llama_server}" in doctor.stdout
    assert_key_absent(tmp_path, KEY)  # config dir, data dir (SQLite, WAL), REPL history, caches
