"""The notebook face: ``%load_ext slmchat`` registers ``%%slm`` (a turn per cell) and ``%slm`` (commands).

IPython is imported only here, when the extension loads; ``import slmchat`` stays light.
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on this shell (``%load_ext slmchat``)."""
    from slmchat.faces.notebook.magics import SlmMagics

    ipython.register_magics(SlmMagics(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    """Close the kernel's session (``%unload_ext slmchat``)."""
    magics = ipython.magics_manager.registry.get("SlmMagics")
    if magics is not None:
        magics.close()
