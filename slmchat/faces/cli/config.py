"""`slmchat config`: where the config file is, what is in effect, and a commented template."""

from __future__ import annotations

import json

import click

from slmchat.infra import paths
from slmchat.infra.config import load_config, write_template


@click.group("config")
def config_group() -> None:
    """Show or create the configuration file."""


@config_group.command("path")
def config_path() -> None:
    """Print where the config file is (or would be)."""
    click.echo(str(paths.config_file()))


@config_group.command("show")
def config_show() -> None:
    """Print the effective configuration (file, defaults and SLMCHAT_* overrides) as JSON."""
    click.echo(json.dumps(load_config().model_dump(mode="json"), indent=2))


@config_group.command("init")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def config_init(force: bool) -> None:
    """Write a commented config file with every default."""
    click.echo(f"wrote {write_template(force=force)}")
