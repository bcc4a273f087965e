"""BackgroundWork: jobs wait for an idle session, a starting turn pauses the one under way, drain runs them now."""

from __future__ import annotations

import asyncio

from slmchat.engine.background import BackgroundWork, Job
from slmchat.infra.backends.base import CancelToken


class Recorder:
    """A job that takes ``seconds`` unless cancelled; it records each start and how it ended."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.log: list[str] = []

    async def __call__(self, cancel: CancelToken) -> bool:
        self.log.append("start")
        waited = 0.0
        while waited < self.seconds:
            if cancel.cancelled:
                self.log.append("paused")
                return False
            await asyncio.sleep(0.01)
            waited += 0.01
        self.log.append("done")
        return True


def test_a_job_waits_until_the_session_has_been_idle_long_enough() -> None:
    async def run() -> list[str]:
        work, job = BackgroundWork(idle_s=0.3), Recorder()
        work.turn_started()
        work.submit(Job(1, job))
        await asyncio.sleep(0.2)
        assert job.log == []  # a turn runs: nothing starts
        work.turn_ended()
        await asyncio.sleep(0.15)
        assert job.log == []  # idle for 0.15 s of the 0.3 s
        await asyncio.sleep(0.4)
        return job.log

    assert asyncio.run(run()) == ["start", "done"]


def test_a_starting_turn_pauses_the_job_and_it_runs_again_at_the_next_idle_spell() -> None:
    async def run() -> tuple[list[str], int, int]:
        work, job = BackgroundWork(idle_s=0.0), Recorder(seconds=0.5)
        work.submit(Job(1, job))
        await asyncio.sleep(0.1)
        assert job.log == ["start"]
        work.turn_started()
        await asyncio.sleep(0.05)
        assert job.log == ["start", "paused"]
        assert len(work) == 1  # still queued
        await asyncio.sleep(0.2)
        assert job.log == ["start", "paused"]  # not while the turn runs
        work.turn_ended()
        await asyncio.sleep(0.8)
        return job.log, work.paused, len(work)

    log, paused, left = asyncio.run(run())
    assert log == ["start", "paused", "start", "done"]
    assert paused == 1 and left == 0


def test_drain_runs_the_queue_now_and_says_whether_it_finished_in_time() -> None:
    async def run() -> tuple[bool, bool, list[str], list[str]]:
        work = BackgroundWork(idle_s=60.0)  # would never run by itself within the test
        quick, slow = Recorder(), Recorder(seconds=0.5)
        work.turn_started()
        work.turn_ended()
        work.submit(Job(1, quick))
        work.submit(Job(2, slow))
        cut_short = await work.drain(timeout=0.2)
        all_done = await work.drain()
        return cut_short, all_done, quick.log, slow.log

    cut_short, all_done, quick, slow = asyncio.run(run())
    assert cut_short is False and all_done is True
    assert quick == ["start", "done"] and slow[-1] == "done"


def test_a_job_that_raises_does_not_stop_the_ones_after_it() -> None:
    async def boom(cancel: CancelToken) -> bool:
        raise RuntimeError("broken job")

    async def run() -> list[str]:
        work, after = BackgroundWork(idle_s=0.0), Recorder()
        work.submit(Job(1, boom))
        work.submit(Job(2, after))
        assert await work.drain(timeout=5)
        return after.log

    assert asyncio.run(run()) == ["start", "done"]


def test_drain_from_another_loop_does_not_start_a_second_worker() -> None:
    async def run() -> bool:
        work = BackgroundWork(idle_s=60.0)
        work.turn_started()
        work.turn_ended()  # a turn just ended: the job waits a minute
        work.submit(Job(1, Recorder()))
        outcome: list[bool] = []

        def other_thread() -> None:
            outcome.append(asyncio.run(work.drain(timeout=0.1)))

        await asyncio.to_thread(other_thread)
        assert outcome == [False]  # the worker lives on this loop; waiting for it there is Session.settle's job
        return await work.drain(timeout=5)

    assert asyncio.run(run()) is True


def test_a_new_session_counts_as_busy_for_idle_s_so_work_never_precedes_its_first_question() -> None:
    async def run() -> tuple[list[str], list[str]]:
        work, job = BackgroundWork(idle_s=0.3), Recorder()
        work.submit(Job("adopt", job))
        await asyncio.sleep(0.1)
        early = list(job.log)
        await asyncio.sleep(0.4)
        return early, job.log

    early, later = asyncio.run(run())
    assert early == [] and later == ["start", "done"]
