"""The terminal app (Textual): the chat log, the turn inspector, overrides by key."""
