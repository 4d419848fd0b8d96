"""Watch a cell2location (pyro / Lightning) training: log progress, stop at the ELBO's plateau.

cell2location's spatial model is trained for a fixed number of full-batch epochs (30 000
recommended, sized for a GPU). On a CPU that is hours for a Visium section, and most of them
change the abundances very little (``benchmarks/c2l_cpu.py``). The watch logs the epoch, the
ELBO and the time left every ``log_every_s`` seconds, and stops training once the mean loss of
the last ``window`` epochs improves on the window before it by less than ``tol`` (relative),
checked every tenth of a window (so the stop does not wait for the next multiple of it).
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger("spaseg")


def relative_gain(losses: np.ndarray, window: int) -> float:
    """How much the mean loss of the last ``window`` epochs improved on the ``window`` before
    it, relative to the last mean (``inf`` until there are two windows)."""
    if len(losses) < 2 * window:
        return float("inf")
    before = losses[-2 * window : -window].mean()
    last = losses[-window:].mean()
    return float((before - last) / max(abs(last), 1e-12))


def training_watch(
    what: str, max_epochs: int, *, tol: float = 0.0, window: int = 500, log_every_s: float = 30
):
    """A Lightning callback for ``model.train(callbacks=[...])``.

    Parameters
    ----------
    what
        Name of the training in the log (e.g. ``"cell2location s1"``).
    max_epochs
        The training's epoch limit (for the time left).
    tol
        Stop once the last ``window`` epochs improve the mean loss by less than this share on the
        ``window`` before them; checked every ``window // 10`` epochs (at least every epoch),
        from the second window on. 0 never stops early.
    window
        Epochs per window.
    log_every_s
        Seconds between progress lines (and one at the end).

    The callback's ``losses`` (the mean loss of every epoch) and ``stopped_at`` (the epoch
    training stopped at, ``None`` when it ran to ``max_epochs``) are there after training.
    """
    from lightning.pytorch.callbacks import Callback

    check_every = max(1, window // 10)

    class TrainingWatch(Callback):
        def __init__(self):
            self.losses: list[float] = []
            self.stopped_at: int | None = None
            self._epoch_losses: list[float] = []
            self._start = self._logged = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._epoch_losses.append(float(outputs["loss"]))

        def on_train_epoch_end(self, trainer, pl_module):
            if not self._epoch_losses:
                return
            self.losses.append(float(np.mean(self._epoch_losses)))
            self._epoch_losses.clear()
            epochs = len(self.losses)
            if tol > 0 and epochs >= 2 * window and epochs % check_every == 0:
                gain = relative_gain(np.asarray(self.losses), window)
                if gain < tol:
                    self.stopped_at = epochs
                    trainer.should_stop = True
                    log.info(
                        "%s: ELBO plateau at epoch %d (last %d epochs improved it by %.1e < %g)",
                        what, epochs, window, gain, tol,
                    )  # fmt: skip
            if time.perf_counter() - self._logged >= log_every_s:
                self._progress()

        def on_train_end(self, trainer, pl_module):
            self._progress()

        def _progress(self):
            self._logged = time.perf_counter()
            epochs = len(self.losses)
            if not epochs:
                return
            elapsed = self._logged - self._start
            left = elapsed / epochs * (max_epochs - epochs) if self.stopped_at is None else 0
            log.info(
                "%s: epoch %d / %d, loss %.4g, %.0f s so far, at most %.0f s to go",
                what, epochs, max_epochs, self.losses[-1], elapsed, left,
            )  # fmt: skip

    return TrainingWatch()
