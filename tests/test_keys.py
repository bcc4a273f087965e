"""API keys: resolution order, masking, the keychain, no keychain, the encrypted file, the CLI.

Every test picks its keyring backend explicitly: an in-memory backend defined here, keyring's own
``fail`` backend, or ``keyrings.cryptfile`` in the test's data dir. None touches a real keychain.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringError, PasswordDeleteError

from slmchat.faces.cli.keys import keys_group
from slmchat.infra import keys
from slmchat.infra.errors import SlmchatError
from tests.helpers import assert_key_absent

OPENAI_KEY = "sk-proj-TESTKEYkeychain0000000000000000abcd"
ENV_KEY = "sk-proj-TESTKEYenvironment00000000000wxyz"
EXPLICIT_KEY = "sk-proj-TESTKEYexplicit0000000000000000qrst"


class MemoryKeyring(KeyringBackend):
    """A working keychain that lives in a dict; never auto-detected (``viable = False``)."""

    priority = 1
    viable = False  # keyring registers every subclass; this keeps it out of keyring's own detection

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


@pytest.fixture(autouse=True)
def clean_key_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider variables, no keyring choice from outside, and keyring's own dirs in tmp_path."""
    for name in [*keys.KNOWN_PROVIDERS.values(), "PYTHON_KEYRING_BACKEND", "TOGETHER_AI_API_KEY", "MY_KEY_VAR"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / "config"))
    keys._cryptfiles.clear()


@pytest.fixture
def memory() -> MemoryKeyring:
    backend = MemoryKeyring()
    with keys.use_backend(backend):
        yield backend


def _root():  # type: ignore[no-untyped-def]
    """The keys group under slmchat's own error handling, as `slmchat keys` will run it."""
    from slmchat.faces.cli import SlmchatGroup

    return SlmchatGroup("slmchat", commands=[keys_group])


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(_root(), ["keys", *args], input=input)


# -- names and masking ---------------------------------------------------------------------


def test_default_environment_variables() -> None:
    assert keys.default_env_var("openai") == "OPENAI_API_KEY"
    assert keys.default_env_var("anthropic") == "ANTHROPIC_API_KEY"
    assert keys.default_env_var("groq") == "GROQ_API_KEY"
    assert keys.default_env_var("OpenRouter") == "OPENROUTER_API_KEY"
    assert keys.default_env_var("together-ai") == "TOGETHER_AI_API_KEY"
    with pytest.raises(SlmchatError, match="not a provider name"):
        keys.default_env_var("no spaces please")


def test_provider_for_hosted_endpoints() -> None:
    assert keys.provider_for(None) == "openai"
    assert keys.provider_for("https://api.openai.com/v1") == "openai"
    assert keys.provider_for("https://api.groq.com/openai/v1") == "groq"
    assert keys.provider_for("https://openrouter.ai/api/v1") == "openrouter"
    assert keys.provider_for("http://127.0.0.1:8080/v1") is None


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz1234", "sk-…1234"),
        ("gsk_abcdefghijklmnopqrstuvwxyzABCD", "gsk_…ABCD"),
        ("0123456789abcdefwxyz", "…wxyz"),
        ("short-key", "…"),
        ("", ""),
    ],
)
def test_mask_shows_at_most_the_last_four(key: str, masked: str) -> None:
    assert keys.mask(key) == masked
    assert len(masked.partition("…")[2]) <= 4


def test_resolved_key_repr_masks_the_value() -> None:
    found = keys.ResolvedKey(OPENAI_KEY, "keychain")
    for text in (repr(found), str(found), f"{found}", repr([found])):
        assert OPENAI_KEY not in text
        assert "sk-…abcd" in text


# -- resolution ----------------------------------------------------------------------------


def test_resolution_order_explicit_then_env_then_keychain(
    memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.set_password("slmchat", "openai", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)

    found = keys.resolve_key("openai", explicit=EXPLICIT_KEY)
    assert (found.value, found.source) == (EXPLICIT_KEY, "explicit")
    found = keys.resolve_key("openai")
    assert (found.value, found.source) == (ENV_KEY, "env OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    found = keys.resolve_key("openai")
    assert (found.value, found.source) == (OPENAI_KEY, "keychain")


def test_env_var_parameter_replaces_the_default_variable(
    memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.set_password("slmchat", "openai", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    assert keys.resolve_key("openai", env_var="MY_KEY_VAR").source == "keychain"  # the default is not consulted
    monkeypatch.setenv("MY_KEY_VAR", EXPLICIT_KEY)
    found = keys.resolve_key("openai", env_var="MY_KEY_VAR")
    assert (found.value, found.source) == (EXPLICIT_KEY, "env MY_KEY_VAR")


def test_nothing_found_is_none(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    assert keys.resolve_key("groq") is None
    monkeypatch.setenv("GROQ_API_KEY", "")  # an empty variable is no key
    assert keys.resolve_key("groq") is None
    with keys.use_backend(fail.Keyring()):
        assert keys.resolve_key("openai") is None  # no keychain: not an error when reading


def test_resolve_for_server(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    memory.set_password("slmchat", "groq", OPENAI_KEY)
    assert keys.resolve_for_server("https://api.groq.com/openai/v1").source == "keychain"
    assert keys.resolve_for_server("http://127.0.0.1:8080/v1") is None  # a local server: no keychain lookup
    monkeypatch.setenv("MY_KEY_VAR", ENV_KEY)
    assert keys.resolve_for_server("http://127.0.0.1:8080/v1", env_var="MY_KEY_VAR").source == "env MY_KEY_VAR"
    assert keys.resolve_for_server("http://127.0.0.1:8080/v1", provider="groq").source == "keychain"
    error = keys.missing_key_error("openai:gpt-4o-mini", "openai")
    assert "OPENAI_API_KEY" in error.message and "slmchat keys set openai" in error.hint


# -- storing, listing, deleting ------------------------------------------------------------


def test_set_list_delete(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    keys.set_key("openai", OPENAI_KEY)
    keys.set_key("together-ai", ENV_KEY)
    assert memory.items[("slmchat", "openai")] == OPENAI_KEY
    monkeypatch.setenv("GROQ_API_KEY", EXPLICIT_KEY)
    rows = {name: (source, masked) for name, source, masked in keys.list_keys()}
    assert rows == {
        "openai": ("keychain", "sk-…abcd"),
        "anthropic": ("none", ""),
        "groq": ("env GROQ_API_KEY", "sk-…qrst"),
        "openrouter": ("none", ""),
        "together-ai": ("keychain", "sk-…wxyz"),
    }
    assert keys.delete_key("openai") is True
    assert keys.delete_key("openai") is False
    assert keys.resolve_key("openai") is None
    assert keys.delete_key("together-ai") is True
    assert "together-ai" not in [name for name, _s, _m in keys.list_keys()]


def test_set_key_rejects_empty_and_spaced_keys(memory: MemoryKeyring) -> None:
    with pytest.raises(SlmchatError, match="empty"):
        keys.set_key("openai", "   ")
    with pytest.raises(SlmchatError, match="spaces") as caught:
        keys.set_key("openai", "sk-abc defghijklmnop")
    assert "defghijklmnop" not in str(caught.value)
    assert memory.items == {}


def test_no_keychain_refuses_and_writes_nothing(tmp_path: Path) -> None:
    with keys.use_backend(fail.Keyring()), pytest.raises(SlmchatError) as caught:
        keys.set_key("anthropic", OPENAI_KEY)
    error = caught.value
    assert "no usable keychain" in error.message
    assert "export ANTHROPIC_API_KEY=" in error.hint
    assert "pip install 'slmchat[cryptfile]'" in error.hint
    assert "SLMCHAT_KEYRING=cryptfile" in error.hint
    assert "SLMCHAT_KEYRING_PASSPHRASE" in error.hint
    assert OPENAI_KEY not in str(error)
    assert not (tmp_path / "data").exists()  # not even the index
    assert_key_absent(tmp_path, OPENAI_KEY)


def test_python_keyring_backend_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")  # priority -1
    assert "keyring.backends.null.Keyring" in keys.key_store_description()
    with pytest.raises(SlmchatError, match="no usable keychain"):
        keys.set_key("openai", OPENAI_KEY)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    assert keys.key_store_description().startswith(
        "no usable keychain (keyring.backends.fail.Keyring, chosen by PYTHON_KEYRING_BACKEND)"
    )
    assert keys.resolve_key("openai") is None
    assert_key_absent(tmp_path, OPENAI_KEY)


def test_file_keyrings_are_never_picked_automatically() -> None:
    assert isinstance(keys._pick_system(fail.Keyring()), fail.Keyring)
    memory = MemoryKeyring()
    assert keys._pick_system(memory) is memory
    cryptfile = pytest.importorskip("keyrings.cryptfile.file")
    # what keyrings.cryptfile registers with keyring, plaintext included
    assert isinstance(keys._pick_system(cryptfile.PlaintextKeyring()), fail.Keyring)


def test_keychain_errors_never_carry_the_key(memory: MemoryKeyring, caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(MemoryKeyring):
        def get_password(self, service: str, username: str) -> str | None:
            raise KeyringError("locked")

        def set_password(self, service: str, username: str, password: str) -> None:
            raise KeyringError(f"cannot store {password}")

    caplog.set_level(logging.DEBUG)
    with keys.use_backend(Refusing()):
        with pytest.raises(SlmchatError) as caught:
            keys.set_key("openai", OPENAI_KEY)
        assert keys.resolve_key("openai") is None
    assert "refused" in caught.value.message
    assert OPENAI_KEY not in str(caught.value)
    keys.set_key("openai", OPENAI_KEY)
    keys.resolve_key("openai")
    keys.list_keys()
    keys.delete_key("openai")
    assert OPENAI_KEY not in caplog.text


def test_unknown_store_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMCHAT_KEYRING", "plaintext")
    with pytest.raises(SlmchatError, match="not a key store"):
        keys.set_key("openai", OPENAI_KEY)


# -- the encrypted file ------------------------------------------------------------------


def test_cryptfile_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("keyrings.cryptfile.cryptfile")
    monkeypatch.setenv("SLMCHAT_KEYRING", "cryptfile")
    monkeypatch.setenv("SLMCHAT_KEYRING_PASSPHRASE", "correct horse battery staple")
    data = Path(os.environ["SLMCHAT_DATA_DIR"])
    assert keys.resolve_key("openai") is None  # no file yet: no passphrase needed, nothing created
    assert not (data / keys.CRYPTFILE_NAME).exists()

    where = keys.set_key("openai", OPENAI_KEY)
    store = data / keys.CRYPTFILE_NAME
    assert str(store) in where and store.is_file()
    assert (store.stat().st_mode & 0o077) == 0  # readable by the owner only
    found = keys.resolve_key("openai")
    assert (found.value, found.source) == (OPENAI_KEY, "keychain")
    assert str(store) in keys.key_store_description()
    assert_key_absent(tmp_path, OPENAI_KEY)

    monkeypatch.setenv("SLMCHAT_KEYRING_PASSPHRASE", "wrong")
    with pytest.raises(SlmchatError, match="wrong or empty passphrase"):
        keys.resolve_key("openai")
    monkeypatch.delenv("SLMCHAT_KEYRING_PASSPHRASE")
    with pytest.raises(SlmchatError, match="needs its passphrase") as caught:
        keys.resolve_key("openai")
    assert "SLMCHAT_KEYRING_PASSPHRASE" in caught.value.hint
    assert str(store) in keys.key_store_description()  # describing needs no passphrase

    monkeypatch.setenv("SLMCHAT_KEYRING_PASSPHRASE", "correct horse battery staple")
    assert keys.delete_key("openai") is True
    assert keys.resolve_key("openai") is None


def test_cryptfile_not_installed_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv("SLMCHAT_KEYRING", "cryptfile")
    monkeypatch.setitem(sys.modules, "keyrings.cryptfile.cryptfile", None)  # import fails
    with pytest.raises(SlmchatError, match=r"keyrings\.cryptfile") as caught:
        keys.set_key("openai", OPENAI_KEY)
    assert "pip install 'slmchat[cryptfile]'" in caught.value.hint


# -- the CLI -------------------------------------------------------------------------------


def test_cli_set_from_stdin_list_delete(memory: MemoryKeyring) -> None:
    result = run("set", "OpenAI", input=OPENAI_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert memory.items[("slmchat", "openai")] == OPENAI_KEY
    assert OPENAI_KEY not in result.output and "sk-…abcd" in result.output

    result = run("list")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert lines["openai"] == ["keychain", "sk-…abcd"]
    assert lines["anthropic"] == ["none"]
    assert OPENAI_KEY not in result.output

    result = run("delete", "openai")
    assert result.exit_code == 0 and "deleted the openai key" in result.output
    result = run("delete", "openai")
    assert result.exit_code == 0 and "no openai key is stored" in result.output
    assert memory.items == {}


def test_cli_set_prompts_without_echo(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    import slmchat.faces.cli.keys

    monkeypatch.setattr(slmchat.faces.cli.keys, "_interactive", lambda: True)
    result = run("set", "groq", input=ENV_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert "API key for groq" in result.output and ENV_KEY not in result.output
    assert memory.items[("slmchat", "groq")] == ENV_KEY


def test_cli_list_shows_env_source(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-TESTKEY000000000000000zzzz")
    result = run("list")
    assert "env ANTHROPIC_API_KEY" in result.output and "sk-…zzzz" in result.output
    assert "TESTKEY" not in result.output


def test_cli_path(memory: MemoryKeyring) -> None:
    result = run("path")
    assert result.exit_code == 0 and "MemoryKeyring" in result.output


def test_cli_no_keychain(tmp_path: Path) -> None:
    with keys.use_backend(fail.Keyring()):
        result = run("set", "openai", input=OPENAI_KEY)
        path = run("path")
    assert result.exit_code == 1
    assert "error: there is no usable keychain" in result.stderr
    assert "export OPENAI_API_KEY=" in result.stderr and "SLMCHAT_KEYRING=cryptfile" in result.stderr
    assert OPENAI_KEY not in result.output
    assert "no usable keychain" in path.output and "slmchat[cryptfile]" in path.output
    assert_key_absent(tmp_path, OPENAI_KEY)


def test_cli_empty_stdin(memory: MemoryKeyring) -> None:
    result = run("set", "openai", input="\n")
    assert result.exit_code == 1 and "no key given for openai" in result.stderr


def test_assert_key_absent_finds_planted_keys(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "blob.bin").write_bytes(b"\xff" * ((1 << 20) - 10) + OPENAI_KEY.encode())  # across a chunk
    (tmp_path / "clean.txt").write_text("nothing here")
    with pytest.raises(pytest.fail.Exception, match=r"blob\.bin"):
        assert_key_absent(tmp_path, OPENAI_KEY)
    assert_key_absent(tmp_path, ENV_KEY)
