"""Memory's failure paths (issue 13): an import stopped by Ctrl-C, a file that is not UTF-8, two
processes storing one fact, the memory folder deleted mid-chat, stored text with escape sequences."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from slmchat.engine.events import MemoryFailed, TurnDone
from slmchat.infra.config import Config, MemoryConfig, TierConfig
from slmchat.infra.errors import SlmchatError
from slmchat.memory.importer import FileImport
from slmchat.memory.manager import Memory
from slmchat.memory.store import MemoryStore
from slmchat.memory.store_writes import IMPORT_BATCH
from slmchat.testing import scripted_session
from tests.helpers import slmchat

pytestmark = pytest.mark.memory


def export_file(path: Path, count: int, *, words: int = 40) -> Path:
    """A file as `slmchat memory export` writes it: a JSON list of ``count`` rows."""
    rows = [
        {"id": f"row{i:05d}", "kind": "fact" if i % 3 else "exchange", "text": f"Note {i}: " + "tea and rust " * words,
         "created_at": 1_700_000_000.0 + i, "updated_at": 1_700_000_000.0 + i, "source": "imported"}
        for i in range(count)
    ]  # fmt: skip
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def ctrl_c_works() -> None:
    """In the child: SIGINT as in a terminal, even when the tests run where it is ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_terminal(terminal: int, wait: float) -> bytes:
    """What the program wrote to its terminal within ``wait`` seconds (EIO: it has closed its end)."""
    read = b""
    while select.select([terminal], [], [], wait)[0]:
        try:
            piece = os.read(terminal, 4096)
        except OSError:
            break
        if not piece:
            break
        read += piece
        wait = 0.1
    return read


def count(folder: Path) -> int:
    with MemoryStore.open(folder) as store:
        return store.count()


# -- case 7: an import stopped half way -------------------------------------------------------


@pytest.mark.serial
@pytest.mark.timeout(600)
def test_ctrl_c_during_an_import_says_how_far_it_got_and_the_same_command_finishes_it(isolated_dirs: Path) -> None:
    rows = IMPORT_BATCH * 3
    source = export_file(isolated_dirs / "memories.json", rows, words=6)
    command = [sys.executable, "-m", "slmchat", "memory", "import", str(source)]
    terminal, stderr_end = pty.openpty()  # stderr is a terminal: the progress bar shows
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_end,
                               preexec_fn=ctrl_c_works)  # fmt: skip
    os.close(stderr_end)
    shown = b""
    deadline = time.monotonic() + 300
    try:
        while f"{IMPORT_BATCH}/{rows}".encode() not in shown:  # one batch written, then Ctrl-C
            assert time.monotonic() < deadline and process.poll() is None, shown.decode(errors="replace")
            shown += read_terminal(terminal, 1.0)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=120)
        shown += read_terminal(terminal, 0.5)
    finally:
        process.kill()
        os.close(terminal)
    said = shown.decode().replace("\r", "\n").strip().splitlines()[-1]
    assert process.returncode == 130 and stdout == b""
    written = count(isolated_dirs / "data" / "memory")
    assert IMPORT_BATCH <= written < rows
    assert said == f"import interrupted: {written} of {rows} rows written; run the same command again to add the rest"

    again = slmchat("memory", "import", str(source))
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"imported {rows} ({written} were already there)\n"
    assert count(isolated_dirs / "data" / "memory") == rows  # the rest added, nothing doubled


@pytest.mark.serial
def test_ctrl_c_while_the_file_is_being_read_writes_nothing(isolated_dirs: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "slmchat", "memory", "import", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ctrl_c_works,
    )  # fmt: skip
    assert process.stdin is not None
    row = json.dumps({"kind": "fact", "text": "The user likes tea"}) + "\n"
    process.stdin.write(row.encode() * 20_000)  # 1 MB: more than a pipe holds, so the command is reading it
    process.stdin.flush()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.decode() == "import interrupted: nothing was written\n"
    assert not (isolated_dirs / "data" / "memory").exists()  # not even opened


def test_a_bad_row_near_the_end_of_a_big_file_stops_the_import_before_anything_is_written(isolated_dirs: Path) -> None:
    source = isolated_dirs / "memories.jsonl"
    good = [json.dumps({"kind": "fact", "text": f"The user has note {i}"}) for i in range(3000)]
    source.write_text("\n".join([*good, '{"kind": "opinion", "text": "x"}', *good[:5]]) + "\n", encoding="utf-8")
    refused = slmchat("memory", "import", str(source))
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: {source} line 3001: kind must be fact or exchange, not 'opinion'\n"
        "  fix: nothing was imported; fix the row and retry\n"
    )
    assert count(isolated_dirs / "data" / "memory") == 0


def test_checking_an_import_keeps_no_rows_in_memory(tmp_path: Path) -> None:
    """The first pass over a 5,000-row (11 MB) export holds about one 64 KB piece and one row at a time."""
    source = export_file(tmp_path / "big.json", 5000, words=150)
    assert source.stat().st_size > 10_000_000
    tracemalloc.start()
    try:
        job = FileImport(lambda: source.open("rb"), str(source))
        assert job.check() == 5000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"checking took {peak / 1e6:.1f} MB"  # the file, parsed whole, is over 30 MB


def test_a_repeated_id_names_both_lines(tmp_path: Path) -> None:
    source = tmp_path / "twice.jsonl"
    source.write_text('{"id": "a", "kind": "fact", "text": "x"}\n\n{"id": "a", "kind": "fact", "text": "y"}\n')
    with pytest.raises(SlmchatError, match=r"twice.jsonl line 3: id a is also in line 1"):
        FileImport(lambda: source.open("rb"), str(source)).check()


# -- case 8c: a file that is not UTF-8 ----------------------------------------------------------


@pytest.mark.parametrize("before", [2, 40_000])  # on the first piece read, and far into the file
def test_an_import_file_that_is_not_utf8_names_the_line_and_writes_nothing(isolated_dirs: Path, before: int) -> None:
    source = isolated_dirs / "latin1.jsonl"
    good = [json.dumps({"kind": "fact", "text": f"The user has note {i}"}) for i in range(before)]
    latin1 = '{"kind": "fact", "text": "The user drinks café au lait"}'.encode("latin-1")
    source.write_bytes("\n".join(good).encode() + b"\n" + latin1 + b"\n")
    refused = slmchat("memory", "import", str(source))
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: {source} line {before + 1} is not UTF-8 text\n"
        "  fix: save the file as UTF-8 (export writes UTF-8); nothing was imported\n"
    )
    assert count(isolated_dirs / "data" / "memory") == 0


# -- case 10c: two processes store the same fact ------------------------------------------------

STORE_FACT = textwrap.dedent(
    """
    import sys
    from slmchat.memory.reconcile import decide
    from slmchat.memory.store import MemoryStore

    fact = "The user's dog is called Biscuit"
    with MemoryStore.open(sys.argv[1], timeout=30) as store:
        change = decide(fact, store.nearest_facts(fact))  # Memory's check ...
        print(change.action, flush=True)
        sys.stdin.readline()  # ... both processes have checked before either adds
        if change.action == "add":
            store.add(fact, "fact", source="user")
    """
)


def test_two_processes_that_both_find_a_fact_new_store_it_once(tmp_path: Path) -> None:
    folder = tmp_path / "memory"
    MemoryStore.open(folder).close()
    processes = [
        subprocess.Popen([sys.executable, "-c", STORE_FACT, str(folder)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "add\n", process.stderr
    for process in processes:
        _, stderr = process.communicate("go\n", timeout=120)
        assert process.returncode == 0, stderr
    with MemoryStore.open(folder) as store:
        assert [item.text for item in store.items()] == ["The user's dog is called Biscuit"]


def test_a_fact_has_one_id_whatever_its_case_spacing_and_full_stop(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "memory") as store:
        first = store.add("The user likes tea", "fact")
        again = store.add("the user  likes TEA.", "fact")
        assert again.id == first.id and store.count() == 1 and store.get(first.id) == again
        store.update(first.id, "The user likes coffee")  # the record keeps its id, now with another text
        tea = store.add("The user likes tea", "fact")
        assert tea.id != first.id and [item.text for item in store.items("fact")] == [tea.text, "The user likes coffee"]
        one, other = store.add("User: hi", "exchange"), store.add("User: hi", "exchange")
        assert one.id != other.id and store.count("exchange") == 2  # two exchanges are two events


# -- case 10d: the memory folder deleted mid-chat -----------------------------------------------


def test_deleting_the_memory_folder_mid_chat_turns_memory_off_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "memory"
    config = Config(
        small=TierConfig(model="scripted:small", max_tokens=64),
        memory=MemoryConfig(path=folder, extract=False),
    )
    memory = Memory(config.memory)
    session = scripted_session(["Noted.", "Still here."], config=config, memory=memory)

    async def scenario() -> tuple[list, list]:
        failures: list[MemoryFailed] = []

        async def watch() -> None:
            async for event in session.events():
                if isinstance(event, MemoryFailed):
                    failures.append(event)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        first = [event async for event in session.turn("I keep bees.")]
        await session.settle()
        assert not failures and memory.store().count() == 1  # the exchange was stored
        shutil.rmtree(folder)
        second = [event async for event in session.turn("What do I keep?")]
        await session.settle()
        await session.aclose()
        await watcher
        return first + second, failures

    events, failures = asyncio.run(scenario())
    done = [event for event in events if isinstance(event, TurnDone)]
    assert [d.stats.answer for d in done] == ["Noted.", "Still here."]  # the chat goes on
    gone = f"the memory folder {folder.resolve()} was deleted while slmchat ran: memory is off for this session"
    assert done[1].stats.memory["note"] == f"memory off: {gone}"
    assert [failure.error for failure in failures] == [gone]
    assert "readonly" not in json.dumps(done[1].stats.memory)
    assert not folder.exists()  # nothing half made in its place


# -- stored text on the terminal ----------------------------------------------------------------


def test_memory_list_and_search_show_escape_sequences_and_newlines_without_obeying_them(isolated_dirs: Path) -> None:
    with MemoryStore.open(isolated_dirs / "data" / "memory") as store:
        store.add("User: title?\nAssistant: \x1b]0;pwned\x07done\x1b[2J \x9b31m", "exchange")
    for command in (["memory", "list"], ["memory", "search", "title"]):
        shown = slmchat(*command)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("\n") == 1  # one row, one line: the newline does not break the table
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\x9b" not in shown.stdout
        assert "title?␊Assistant: ␛]0;pwned␇done␛[2J \\x9b31m" in shown.stdout
        as_json = slmchat(*command, "--json")
        assert "\x1b" not in as_json.stdout and "\x9b" not in as_json.stdout
        assert json.loads(as_json.stdout)[0]["text"].endswith("\x1b[2J \x9b31m")  # the data itself is kept


def test_memory_list_of_one_kind_says_when_only_the_other_kind_exists(isolated_dirs: Path) -> None:
    with MemoryStore.open(isolated_dirs / "data" / "memory") as store:
        store.add("User: Hi\nAssistant: Hello", "exchange")
    facts = slmchat("memory", "list", "--kind", "fact")
    assert facts.returncode == 0, facts.stderr
    assert facts.stdout.strip() == "no facts remembered (1 exchange: see `slmchat memory list`)"
    assert "exchange" in slmchat("memory", "list", "--kind", "exchange").stdout
