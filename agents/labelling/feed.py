"""What each labeller is shown: comparisons sampled ahead in a background thread.

A thread keeps ``ready`` fresh comparisons waiting, calling the sampler for another batch
whenever fewer are left, so a labeller rarely waits for the model. Each comparison goes to
``labels_per_comparison`` different labellers (more than 1 measures agreement between them);
comparisons the database holds with fewer judgments than that (after a restart) are served
again first. A labeller keeps the comparison they are shown until they judge it, so reloading the
page shows the same one; undoing a judgment gives its comparison back to them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from rlhf_env.data.judgments import Comparison, JudgmentStore

log = logging.getLogger(__name__)


class SamplingFailed(RuntimeError):
    """The background sampler stopped on an error (the message is that error's)."""


class ComparisonFeed:
    """Comparisons for labellers (module docstring); :meth:`start` the thread before serving."""

    def __init__(
        self,
        sample_batch: Callable[[], list[Comparison]],
        store: JudgmentStore,
        *,
        ready: int = 8,
        labels_per_comparison: int = 1,
    ):
        if ready < 1 or labels_per_comparison < 1:
            raise ValueError(
                f"ready and labels per comparison must be >= 1, got {ready} and "
                f"{labels_per_comparison}"
            )
        self.sample_batch = sample_batch
        self.ready = ready
        self.needed = labels_per_comparison
        self._fresh: deque[Comparison] = deque()
        self._open: dict[str, tuple[Comparison, set[str]]] = {
            c.uid: (c, judged) for c, judged in store.open_comparisons(labels_per_comparison)
        }
        self._assigned: dict[str, Comparison] = {}
        self._error: BaseException | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._fill, name="label-sampler", daemon=True)

    def start(self) -> ComparisonFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling. A batch still being sampled after ``timeout`` seconds is abandoned
        (the thread is a daemon: it ends with the process), so stopping the server is quick."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(timeout)

    @property
    def ready_count(self) -> int:
        with self._changed:
            return len(self._fresh)

    def _fill(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or len(self._fresh) < self.ready)
                if self._stopping:
                    return
            try:
                batch = self.sample_batch()
            except Exception as error:  # shown to the labellers; the server stays up
                log.exception("sampling comparisons failed")
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                self._fresh.extend(batch)
                self._changed.notify_all()

    def current(self, labeller: str, timeout: float = 2.0) -> Comparison | None:
        """The comparison ``labeller`` is to judge, or None if none is ready within ``timeout``
        seconds. Raises :class:`SamplingFailed` if the sampler stopped on an error."""
        with self._changed:
            if labeller in self._assigned:
                return self._assigned[labeller]
            for comparison, judged in self._open.values():
                holders = [who for who, c in self._assigned.items() if c.uid == comparison.uid]
                if labeller not in judged and len(judged) + len(holders) < self.needed:
                    self._assigned[labeller] = comparison
                    return comparison
            self._changed.wait_for(
                lambda: self._fresh or self._error is not None or self._stopping, timeout
            )
            if not self._fresh:
                if self._error is not None:
                    raise SamplingFailed(f"{type(self._error).__name__}: {self._error}")
                return None
            comparison = self._fresh.popleft()
            self._changed.notify_all()  # the filler may sample another batch
            if self.needed > 1:
                self._open[comparison.uid] = (comparison, set())
            self._assigned[labeller] = comparison
            return comparison

    def judged(self, labeller: str, comparison: Comparison) -> None:
        """``labeller`` judged ``comparison`` (it is stored): move them on to the next one."""
        with self._changed:
            if self._assigned.get(labeller, comparison).uid == comparison.uid:
                self._assigned.pop(labeller, None)
            if comparison.uid in self._open:
                judged = self._open[comparison.uid][1]
                judged.add(labeller)
                if len(judged) >= self.needed:
                    del self._open[comparison.uid]

    def undone(self, labeller: str, comparison: Comparison) -> None:
        """``labeller``'s judgment of ``comparison`` was deleted: show it to them again; the
        comparison they had instead goes back to the front of the queue."""
        with self._changed:
            shown = self._assigned.get(labeller)
            if shown is not None and shown.uid != comparison.uid and shown.uid not in self._open:
                self._fresh.appendleft(shown)
            self._assigned[labeller] = comparison
            if self.needed > 1:
                _, judged = self._open.setdefault(comparison.uid, (comparison, set()))
                judged.discard(labeller)
