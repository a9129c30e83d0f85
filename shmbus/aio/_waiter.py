"""The helper thread a waiting consumer or producer sleeps in (DESIGN.md §5)."""
import asyncio
import queue
import threading
from typing import Any, Callable, Optional, Tuple

from .._backend import StopWord
from .._errors import Closed

_Job = Optional[Tuple[Callable[[int], Any], int, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]]


class Waiter:
    """One thread that runs blocking futex waits for one client and hands each result to
    the event loop (call_soon_threadsafe). A wait is given the stop word's value read when
    it was submitted; cancelling the awaiting task bumps the word, which ends the wait at
    once (the waits sleep on it too: sb_wait_data_or_stop, sb_space_wait)."""

    def __init__(self, name: str):
        self.stop_word = StopWord()
        self._name = name
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._busy = threading.Lock()   # held while a wait runs
        self._closed = False

    async def run(self, wait: Callable[[int], Any]) -> Any:
        """Run wait(stop_seen) on the helper thread; its result. Cancelled: the wait is
        stopped at once and CancelledError raised."""
        if self._closed:
            raise Closed("closed while waiting")
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Any]" = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put((wait, self.stop_word.value, loop, future))
        try:
            return await future
        except asyncio.CancelledError:
            self.stop_word.stop()
            raise

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            wait, seen, loop, future = job
            result: Any = None
            error: Optional[BaseException] = None
            with self._busy:
                if not future.done():   # not cancelled while queued
                    try:
                        result = wait(seen)
                    except BaseException as e:
                        error = e
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:   # the loop is closed: nobody waits any more
                pass

    def interrupt(self) -> None:
        """End the wait in progress (its awaiter goes round again) and return once no wait
        runs: what it sleeps on may then change (readers closed, a rebalance)."""
        self.stop_word.stop()
        with self._busy:
            pass

    def close(self) -> None:
        """Stop the current wait and end the thread; returns once no wait runs (the rings
        it sleeps on may be unmapped after)."""
        self._closed = True
        self.stop_word.stop()
        if self._thread is not None:
            self._jobs.put(None)
            with self._busy:
                pass
            self._thread.join(5.0)
            self._thread = None


def _settle(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
