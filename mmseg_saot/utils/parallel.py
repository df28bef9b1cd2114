"""Map a function over work items on worker processes, with a progress bar.

Used by the dataset converters in ``tools/dataset_converters``.
"""
import signal
from multiprocessing import Pool
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from tqdm import tqdm

Item = TypeVar('Item')
Result = TypeVar('Result')


def map_with_progress(fn: Callable[[Item], Result], items: Sequence[Item],
                      nproc: int, desc: str, chunksize: int = 4,
                      initializer: Optional[Callable] = None,
                      initargs: tuple = (), unit: str = 'img'
                      ) -> Iterator[Result]:
    """Yield ``fn(item)`` for every item, with a tqdm bar.

    With ``nproc <= 1`` (or at most one item) the items are mapped in this
    process, in order; otherwise on a ``multiprocessing.Pool`` of ``nproc``
    workers (each started with ``initializer(*initargs)``, given
    ``chunksize`` items at a time), and the results come in completion
    order. ``fn`` and the items must then be picklable: ``fn`` a
    module-level function.
    """
    bar = dict(total=len(items), desc=desc, unit=unit, dynamic_ncols=True)
    if nproc <= 1 or len(items) <= 1:
        yield from tqdm(map(fn, items), **bar)
        return
    with Pool(nproc, initializer=_start_worker, initargs=(initializer, initargs)) as pool:
        yield from tqdm(pool.imap_unordered(fn, items, chunksize=chunksize),
                        **bar)


def leave_interrupts_to_parent() -> None:
    """Pool initializer: the worker ignores Ctrl-C (SIGINT), which the main process
    handles by stopping the pool; else every worker printed its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_worker(initializer: Optional[Callable], initargs: tuple) -> None:
    leave_interrupts_to_parent()
    if initializer is not None:
        initializer(*initargs)
