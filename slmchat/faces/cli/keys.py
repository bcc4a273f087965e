"""`slmchat keys`: store, list and delete API keys in the OS keychain (see slmchat.infra.keys)."""

from __future__ import annotations

import json
import os
import sys

import click

from slmchat.infra import keys
from slmchat.infra.errors import SlmchatError


def _interactive() -> bool:
    return sys.stdin.isatty()


@click.group("keys")
def keys_group() -> None:
    """Keep API keys in the OS keychain instead of environment variables.

    A key is taken from the environment variable first (OPENAI_API_KEY, ...), then the keychain.
    """


@keys_group.command("set")
@click.argument("provider")
def keys_set(provider: str) -> None:
    """Store the key for PROVIDER (openai, anthropic, groq, openrouter, ...).

    Asks for the key without echoing it, or reads it from stdin when stdin is not a terminal.
    """
    name = keys.normalize_provider(provider)
    if _interactive():
        key = click.prompt(f"API key for {name}", hide_input=True, confirmation_prompt=False)
    else:
        key = sys.stdin.read()
    key = key.strip()
    if not key:
        raise SlmchatError(
            f"no key given for {name}", f"type it when asked, or pipe it: slmchat keys set {name} < file"
        )
    where = keys.set_key(name, key, interactive=_interactive())
    click.echo(f"stored the {name} key ({keys.mask(key)}) in {where}")
    var = keys.default_env_var(name)
    if os.environ.get(var):
        click.echo(f"note: {var} is set in this environment and takes precedence over the keychain", err=True)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (keys masked, as in the text).")
def keys_list(as_json: bool) -> None:
    """Each provider, where its key comes from (env VAR, keychain or none), and the key masked."""
    rows = keys.list_keys(interactive=_interactive())
    if as_json:
        fields = ("provider", "source", "masked")
        click.echo(json.dumps([dict(zip(fields, row, strict=True)) for row in rows], indent=2))
        return
    width = max(len(name) for name, _source, _masked in rows)
    source_width = max(len(source) for _name, source, _masked in rows)
    for name, source, masked in rows:
        click.echo(f"{name:<{width}}  {source:<{source_width}}  {masked}".rstrip())


@keys_group.command("delete")
@click.argument("provider")
def keys_delete(provider: str) -> None:
    """Remove the stored key for PROVIDER (environment variables are left alone)."""
    name = keys.normalize_provider(provider)
    if keys.delete_key(name, interactive=_interactive()):
        click.echo(f"deleted the {name} key")
    else:
        click.echo(f"no {name} key is stored")
    var = keys.default_env_var(name)
    if os.environ.get(var):
        click.echo(f"note: {var} is still set in this environment", err=True)


@keys_group.command("path")
def keys_path() -> None:
    """Where keys are kept: the keyring backend and, for a file, its path."""
    click.echo(keys.key_store_description())
