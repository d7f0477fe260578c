"""Drawing the report's figures on every core.

Matplotlib draws one figure on one core, and a report of the zoo has about sixty of them, so
`figure_pool(n)` runs the figure writers in n worker processes. Workers start with `spawn`:
a fork of a process that has already run PyTorch's thread pool can hang in the child. Each
worker keeps PyTorch to one thread, so n workers use n cores. With n = 1 everything runs in
this process, in order, which is what tests and notebooks get by default.
"""

from __future__ import annotations

import multiprocessing
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
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
