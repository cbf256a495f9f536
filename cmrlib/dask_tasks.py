"""Dask for the data-parallel steps (ingest, phantom cohorts, optical flow, inference over a store): one task per
subject or cine, on a LocalCluster of this machine or on any Dask scheduler (a cluster started by hand, or by
`dask-jobqueue` on SLURM/PBS; see the README).

    with dask_tasks.client(scheduler=None, workers=2) as client:        # None + 1 worker: no Dask, this process
        for item, result, error in dask_tasks.map_tasks(fn, items, client, desc="ingest"):
            ...

`scheduler`: None (a LocalCluster when workers > 1, else this process), "local" (a LocalCluster), an address
("tcp://host:8786") or a scheduler file (`*.json`, from `dask scheduler --scheduler-file`). A task's exception comes
back as its `error` (one item fails, the batch goes on); a worker that dies mid-task has its tasks run again on
another (Dask's own retry), so a lost worker or node costs only unfinished work. Tasks write their results into the
store atomically themselves, so a re-run resumes from what is on disk.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import random
import sys
import threading
import uuid
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

CONNECT_TIMEOUT_S = 10.0  # how long to wait for a scheduler that does not answer
LOCAL = "local"


class SchedulerUnreachable(ConnectionError):
    """No Dask scheduler answers at the address given."""


def wants_dask(scheduler: Any = None, workers: int = 1) -> bool:
    """Whether a step runs on Dask: a scheduler was named, or several local workers were asked for."""
    return scheduler not in (None, "", "none") or int(workers or 1) > 1


@contextlib.contextmanager
def client(scheduler: Any = None, workers: int = 1, timeout_s: float = CONNECT_TIMEOUT_S):
    """A Dask `Client` for the step (closed afterwards; a LocalCluster it started is shut down), or None when the
    step runs in this process. A `distributed.Client` passed as `scheduler` is used as it is and left open."""
    if not wants_dask(scheduler, workers):
        yield None
        return
    from distributed import Client

    sizes_without_global_random()

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler in (None, "", "none", LOCAL):
        import dask
        from distributed import LocalCluster

        # Dask's default MALLOC_TRIM_THRESHOLD_ turns off glibc's adaptive mmap threshold, so every large array is
        # mapped and unmapped afresh: torch inference in a worker measured 1.6x slower with it (bench_scale)
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            lc = LocalCluster(n_workers=max(1, int(workers or 1)), threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=logging.ERROR)
        with lc, Client(lc) as c:
            yield c
        return
    with connect(scheduler, timeout_s) as c:
        yield c


def connect(scheduler: Any, timeout_s: float = CONNECT_TIMEOUT_S):
    """A Client on an existing scheduler (address, scheduler file or cluster object); SchedulerUnreachable, one line,
    when none answers within `timeout_s`."""
    from distributed import Client

    where = scheduler if isinstance(scheduler, str) else type(scheduler).__name__
    kw = dict(address=scheduler)
    if isinstance(scheduler, str) and scheduler.endswith(".json"):
        if not Path(scheduler).expanduser().is_file():  # Dask would wait for it to appear, without a time limit
            raise SchedulerUnreachable(f"no Dask scheduler file at {scheduler} (start one with `dask scheduler "
                                       f"--scheduler-file {scheduler}`, or leave --scheduler out for a local cluster)")
        kw = dict(scheduler_file=str(Path(scheduler).expanduser()))
        try:
            info = json.loads(Path(kw["scheduler_file"]).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("address"), str):
            raise SchedulerUnreachable(f"{Path(scheduler).name}: not a Dask scheduler file (JSON with an "
                                       "'address'); start one with `dask scheduler --scheduler-file FILE`")
    made: dict = {}

    def make():
        try:
            made["client"] = Client(**kw, timeout=timeout_s, set_as_default=False)
        except Exception as e:  # noqa: BLE001 (handed to the caller below)
            made["error"] = e

    # a peer that accepts the connection but never answers would hold Client's handshake past its own timeout
    attempt = threading.Thread(target=make, name="cmrlib-connect", daemon=True)
    attempt.start()
    attempt.join(timeout_s + 2.0)
    if "client" in made:
        return made["client"]
    e = made.get("error")
    if e is not None and not isinstance(e, (OSError, TimeoutError, ValueError)):
        raise e
    why = type(e).__name__ if e is not None else "no answer"
    raise SchedulerUnreachable(f"no Dask scheduler answers at {where} within {timeout_s:g} s ({why}); start one, or "
                               "leave --scheduler out for a local cluster")


_OWN_SAMPLES = random.Random(0)  # Dask's size estimates of long lists sample from this, not the global `random`


def sizes_without_global_random() -> None:
    """Dask sizes every message and result on its event loop thread, sampling long lists and tuples with Python's
    global `random`, while this process's fits draw from that state too (fastai's batch order and augmentation):
    a fit beside an open client, or a task on a worker, would then train differently from run to run. Dask's
    estimate stays; its samples come from a generator of its own."""
    from dask.sizeof import sizeof

    def sizeof_python_collection(seq):
        if len(seq) <= 10:
            return sys.getsizeof(seq) + sum(map(sizeof, seq))
        return sys.getsizeof(seq) + int(len(seq) / 10 * sum(map(sizeof, _OWN_SAMPLES.sample(seq, 10))))

    sizeof.register((list, tuple))(sizeof_python_collection)


def n_threads(c) -> int:
    """Worker threads the cluster has now (at least 1)."""
    return max(1, sum(c.nthreads().values()))


def start(scheduler: Any = None, workers: int = 1):
    """`client` kept open for a notebook's life (closed when the kernel exits): a Client, or None for this process."""
    stack = contextlib.ExitStack()
    c = stack.enter_context(client(scheduler, workers))
    atexit.register(_close_quietly, stack)
    return c


def _close_quietly(stack: contextlib.ExitStack):
    """Close a notebook's client and cluster at exit without Dask's shutdown chatter (a worker's stream closing
    before the scheduler's is logged as a CommClosedError traceback, though nothing is wrong)."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        stack.close()
    except Exception:  # noqa: BLE001 (at exit nothing is left to save: the cluster goes with the process)
        pass
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def describe(c) -> str:
    """Where the data-parallel steps run, in words (no addresses: they may name a site's hosts)."""
    if c is None:
        return "in this process (workers=1, no scheduler)"
    kind = type(c.cluster).__name__ if c.cluster is not None else "a Dask scheduler"
    return f"Dask, {len(c.nthreads())} worker(s) with {n_threads(c)} thread(s) on {kind}"


class Shared:
    """A batch's shared arguments (a model, settings), sent to every worker once as one object: Dask pickles an
    object of a type it has no serialiser for whole, so its own torch serialiser, which fails on some modules (an
    LSTM that has run a forward pass), never sees them."""

    __slots__ = ("args",)

    def __init__(self, args: tuple):
        self.args = tuple(args)


_SIZED = []  # in a worker: whether its event loop sizes results without the global random yet


def _with_shared(item, shared: Shared, fn: Callable):
    """One task: `fn(item, *args)` with the batch's shared arguments, which the worker holds once for every task."""
    if not _SIZED:
        sizes_without_global_random()  # this worker's event loop sizes the results
        _SIZED.append(True)
    return fn(item, *shared.args)


def _call(fn: Callable, item, args: tuple) -> tuple[Any, BaseException | None]:
    try:
        return fn(item, *args), None
    except Exception as e:  # one item's failure is reported with it, as on Dask
        return None, e


def map_tasks(fn: Callable, items: Iterable, c=None, *, args: tuple = (), desc: str = "", unit: str = "item",
              progress: bool = True, window: int | None = None) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """(item, result, error) of `fn(item, *args)` for every item, in the order they finish (input order in this
    process).

    On Dask, `args` (a model, settings) are sent to every worker once, not with each task; at most `window` tasks
    are in flight (default 4 per worker thread), so a million items never sit in the scheduler at once, and each
    finished task's result is released as soon as it is handed over."""
    items = list(items)
    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress) as bar:
        if c is None:
            for it in items:
                yield (it, *_call(fn, it, args))
                bar.update()
            return
        from distributed import as_completed

        batch, owner = uuid.uuid4().hex[:8], {}
        todo = iter(enumerate(items))
        task = partial(_with_shared, fn=fn)
        shared = c.scatter(Shared(args), broadcast=True, hash=False)

        def submit(i, it):
            f = c.submit(task, it, shared, pure=False, key=f"{desc or 'task'}-{batch}-{i}")
            owner[f.key] = it
            return f

        running = as_completed([submit(i, it) for i, it in islice(todo, window or 4 * n_threads(c))])
        for fut in running:
            try:
                res, err = fut.result(), None
            except Exception as e:  # the task raised, or killed workers until Dask gave up (KilledWorker)
                res, err = None, e
            it = owner.pop(fut.key)
            fut.release()
            nxt = next(todo, None)
            if nxt is not None:
                running.add(submit(*nxt))
            bar.update()
            yield it, res, err
