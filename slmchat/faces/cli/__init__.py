"""The `slmchat` command line: the chat by default, `ask`, and the groups beside it."""

from slmchat.faces.cli.main import SlmchatGroup, main

__all__ = ["SlmchatGroup", "main"]
