"""The built-in themes of the terminal app, as TOML data; installed as the package ``slmchat.themes``.

This file only makes the folder a regular package: the editable install cannot find a namespace
package mapped from outside ``slmchat/``. ``slmchat.faces.tui.themes`` reads the ``*.toml`` files.
"""
