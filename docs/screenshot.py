"""Regenerate docs/tui.svg: the app saves its own screenshot of a scripted turn with an escalation.

    .venv/bin/python docs/screenshot.py

The stream is scripted (slmchat.testing) so the picture is the same on every machine; the
times in it are the app's own measurements of that scripted run.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from slmchat.faces.tui.app import SlmchatApp
from slmchat.faces.tui.chat_log import ChatLog
from slmchat.infra.config import Config
from slmchat.testing import scripted_session

LOOP = ["Paris is ", *["la Femme, "] * 60]
ANSWER = "Paris is the capital of France. It lies on the **Seine**.\n\n```python\nprint('Bonjour')\n```\n"


async def main() -> None:
    data = Path(tempfile.mkdtemp())
    app = SlmchatApp(Config(), lambda: scripted_session(["Hello! How can I help?", LOOP], [ANSWER], data_dir=data))
    async with app.run_test(size=(120, 36)) as pilot:
        while not app.ready.is_set():
            await pilot.pause(0.05)
        for question in ("Hi!", "What is the capital of France?"):
            await pilot.click("#prompt")
            await pilot.press(*question, "enter")
            await pilot.pause(0.2)
            while app.live is not None or len(app.query_one(ChatLog).blocks()) < (1 if question == "Hi!" else 2):
                await pilot.pause(0.05)
        await pilot.pause(0.5)
        app.save_screenshot(str(Path(__file__).with_name("tui.svg")))


if __name__ == "__main__":
    asyncio.run(main())
