"""Drawing the report's figures on every core.

Matplotlib draws one figure on one core, and a report of the zoo has about sixty of them, so
`figure_pool(n)` runs the figure writers in n worker processes. Workers start with `spawn`:
a fork of a process that has already run PyTorch's thread pool can hang in the child. Each
worker keeps PyTorch to one thread, so n workers use n cores. With n = 1 everything runs in
this process, in order, which is what tests and notebooks get by default.

A warning raised in a worker is caught there and raised again here when its job's result is
read, so it goes wherever this process's warnings go (one line of `ssmprobe`'s), not printed
raw by the worker as raised from concurrent/futures/process.py.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from ssmprobe.io import replacing_allowed


class _InProcess(Executor):
    """An executor that runs each call at once, in this process."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # raised again by future.result(), as a pool would
            future.set_exception(error)
        return future


def _start_worker(replace: bool) -> None:
    """One PyTorch thread, and the parent's --force (a context variable does not cross)."""
    import torch

    from ssmprobe.io import allow_replacing

    torch.set_num_threads(1)
    allow_replacing(replace)


def _caught(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[tuple[str, type]]]:
    """fn(*args) in a worker, with the warnings it raised as (message, category)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [(str(w.message), w.category) for w in caught]


class _Relayed(Future):
    """A worker's job whose warnings are raised again in this process by `result()`."""

    _caught: list[tuple[str, type]]

    def result(self, timeout: float | None = None) -> Any:
        value = super().result(timeout)
        caught, self._caught = getattr(self, "_caught", []), []
        for message, category in caught:
            warnings.warn(message, category, stacklevel=2)
        return value


class _Relaying(Executor):
    """`pool` with each job's warnings relayed (`_Relayed`)."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if kwargs:
            raise TypeError("figure jobs take positional arguments")
        outer = _Relayed()
        inner = self.pool.submit(_caught, fn, *args)

        def done(job: Future) -> None:
            if job.cancelled():
                outer.cancel()
                outer.set_running_or_notify_cancel()
            elif job.exception() is not None:
                outer.set_exception(job.exception())
            else:
                value, outer._caught = job.result()
                outer.set_result(value)

        inner.add_done_callback(done)
        return outer


@contextmanager
def figure_pool(workers: int) -> Iterator[Executor]:
    """An executor over `workers` processes (in this process for 1). On an error or Ctrl-C the
    figures not started are cancelled."""
    if workers <= 1:
        yield _InProcess()
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(replacing_allowed(),),
    )
    try:
        yield _Relaying(pool)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
