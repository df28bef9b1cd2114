"""Seeds of a UDA segmentor's random draws, a function of the iteration: a resumed run
repeats the strong views and dropout masks of the uninterrupted one."""
import contextlib
import hashlib
from typing import Iterator, Optional

import torch
from mmengine.logging import MessageHub


class IterationSeedsMixin:
    """Per-iteration seeds for a segmentor with ``seed`` (the model's option),
    ``iteration`` (set by ``UDAStageHook``, or None) and a ``decode_head``.

    The strong views of iteration ``i`` on rank ``r`` draw from
    :meth:`_iteration_seed` ``(i, r)``, the heads' dropout from :meth:`_dropout_seed`
    ``(i)`` inside :meth:`_iteration_rng`.
    """

    seed: int
    iteration: Optional[int]
    run_seed: int = 0
    rank: int = 0

    def set_run_seed(self, seed: Optional[int], rank: int = 0) -> None:
        """Take the run's seed (``runner.seed``: ``randomness.seed``, plus the rank with
        ``diff_rank_seed``) and the process's rank, so that another ``randomness.seed``
        draws other strong views and dropout masks, and each rank other strong views (as
        MMEngine's dataloader workers draw per rank). Set by ``UDAStageHook``."""
        self.run_seed, self.rank = int(seed or 0), int(rank)

    def _iteration_seed(self, iteration: int, rank: int = 0) -> int:
        """The seed of ``iteration``'s random draws on ``rank``: a function of the model's
        and the run's seeds and the iteration only, so a resumed run repeats them."""
        seed = (self.seed + 1000003 * self.run_seed + 2000000011 * rank) * 100003 + iteration
        return seed % (1 << 63)

    def _dropout_seed(self, iteration: int) -> int:
        """The seed of ``iteration``'s dropout masks: the iteration's seed hashed into a
        stream of its own. (``2 s + 1`` was the views' seed of iteration ``2 i + 1``: the
        masks of one step and the views of another came from the same generator state.)"""
        key = f'dropout:{self._iteration_seed(iteration)}'.encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], 'little') >> 1

    @contextlib.contextmanager
    def _iteration_rng(self) -> Iterator[None]:
        """Draw the step's global-RNG randomness (the heads' dropout) from a seed of
        ``(seed, iteration)``, on a fork of the RNG that leaves the caller's state alone.

        MMEngine does not save RNG states in checkpoints: without this, a resumed run
        continues from the seed's initial state, and its dropout masks (and so its
        weights) differ from those of the uninterrupted run. The iteration is
        ``UDAStageHook``'s, else the training loop's (MMEngine's ``RuntimeInfoHook``);
        outside a training loop the global RNG is used as it is.
        """
        iteration = self.iteration
        if iteration is None:
            hub = MessageHub.get_current_instance()
            if hub.get_info('loop_stage') == 'train':
                iteration = hub.get_info('iter')
        if not isinstance(iteration, int):
            yield
            return
        device = next(self.decode_head.parameters()).device
        devices = [device.index or 0] if device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            # not the views' seed; the same on every rank unless diff_rank_seed (MMEngine's rule)
            torch.manual_seed(self._dropout_seed(iteration))
            yield
