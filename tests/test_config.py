"""Configuration: defaults, the TOML file, SLMCHAT_* overrides and the errors users see."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from slmchat.infra import paths
from slmchat.infra.config import TEMPLATE, Config, load_config, write_template
from slmchat.infra.errors import ConfigError


def test_no_file_means_defaults_with_the_embedded_model() -> None:
    config = load_config()
    assert config.small.model == "llamacpp:smollm2"
    assert config.large is None and config.route == "auto"


def test_the_template_is_valid_and_documents_the_defaults(tmp_path: Path) -> None:
    assert Config.model_validate(tomllib.loads(TEMPLATE)) == Config()
    path = write_template()
    assert path == paths.config_file() and load_config() == Config()
    with pytest.raises(ConfigError, match="already exists"):
        write_template()
    write_template(force=True)


def test_environment_overrides_file_values(monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text('[small]\nmodel = "llamacpp:smollm2"\nmax_tokens = 100\n')
    monkeypatch.setenv("SLMCHAT_SMALL__MAX_TOKENS", "64")
    monkeypatch.setenv("SLMCHAT_LARGE__MODEL", "openai:gpt-4o-mini")
    monkeypatch.setenv("SLMCHAT_ROUTE", "small")
    monkeypatch.setenv("SLMCHAT_SMALL__OPTIONS__N_THREADS", "2")
    config = load_config()
    assert config.small.max_tokens == 64 and config.small.options == {"n_threads": 2}
    assert config.large is not None and config.large.model == "openai:gpt-4o-mini"
    assert config.route == "small"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text("[routing]\nbudget_usd_per_day = 2.5\n")
    monkeypatch.setenv("SLMCHAT_ROUTING__BUDGET_USD_PER_DAY", "")
    monkeypatch.setenv("SLMCHAT_ROUTE", "  ")
    monkeypatch.setenv("SLMCHAT_SYSTEM_PROMPT", '""')  # a quoted empty string is still a value
    config = load_config()
    assert config.routing.budget_usd_per_day == 2.5 and config.route == "auto" and config.system_prompt == ""


def test_errors_name_the_source_key_and_expectation(monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text('route = "sometimes"\n[small]\nmodel = "llamacpp:smollm2"\ntimeout_s = -1\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = caught.value.message
    assert f"{paths.config_file()}: route: String should match pattern" in message
    assert "small.timeout_s: Input should be greater than 0 (got -1)" in message
    assert caught.value.hint and "docs/configuration.md" in caught.value.hint

    paths.config_file().write_text("")
    monkeypatch.setenv("SLMCHAT_LARGE__TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match=r"SLMCHAT_LARGE__TIMEOUT_S: large\.model: Field required"):
        load_config()


def test_an_explicit_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('[small]\nmodel = "ollama:llama3.2:3b"\n')
    monkeypatch.setenv("SLMCHAT_CONFIG", str(other))
    assert paths.config_file() == other and load_config().small.model == "ollama:llama3.2:3b"


def test_tuning_the_default_tier_from_the_environment_keeps_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMCHAT_SMALL__MAX_TOKENS", "64")
    config = load_config()
    assert config.small.model == "llamacpp:smollm2" and config.small.max_tokens == 64
