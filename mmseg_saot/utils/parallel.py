"""Map a function over work items on worker processes, with a progress bar.

Used by the dataset converters in ``tools/dataset_converters``.
"""
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from tqdm import tqdm

from mmseg_saot.utils.errors import UserInputError

Item = TypeVar('Item')
Result = TypeVar('Result')


def map_with_progress(fn: Callable[[Item], Result], items: Sequence[Item],
                      nproc: int, desc: str, chunksize: int = 4,
                      initializer: Optional[Callable] = None,
                      initargs: tuple = (), unit: str = 'img'
                      ) -> Iterator[Result]:
    """Yield ``fn(item)`` for every item, with a tqdm bar.

    With ``nproc <= 1`` (or at most one item) the items are mapped in this
    process; otherwise on ``nproc`` worker processes (each started with
    ``initializer(*initargs)``, given ``chunksize`` items at a time). Either way
    the results come in the items' order. ``fn`` and the items must then be
    picklable: ``fn`` a module-level function.

    Raises:
        UserInputError: a worker process died (killed for memory, a crash in a
            decoder) or its initializer failed; a ``multiprocessing.Pool`` waited for
            such a worker forever, or started new ones without end.
    """
    bar = dict(total=len(items), desc=desc, unit=unit, dynamic_ncols=True)
    if nproc <= 1 or len(items) <= 1:
        yield from tqdm(map(fn, items), **bar)
        return
    with ProcessPoolExecutor(nproc, initializer=_start_worker,
                             initargs=(initializer, initargs)) as pool:
        try:
            yield from tqdm(pool.map(fn, items, chunksize=chunksize), **bar)
        except BrokenProcessPool:
            raise UserInputError(
                f'{desc}: a worker process died (killed for lack of memory, or a crash '
                'while reading a file); run again with fewer processes (--nproc), or '
                '--nproc 1 to see which file it was.') from None
        except BaseException:  # Ctrl-C, an error in fn: do not start the items left
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def leave_interrupts_to_parent() -> None:
    """Pool initializer: the worker ignores Ctrl-C (SIGINT), which the main process
    handles by stopping the pool; else every worker printed its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_worker(initializer: Optional[Callable], initargs: tuple) -> None:
    leave_interrupts_to_parent()
    if initializer is not None:
        initializer(*initargs)
