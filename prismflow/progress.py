"""One progress helper for long loops: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time


class Progress:
    """Report progress of ``total`` steps of ``desc``.

    On a terminal (stderr is a TTY and ``enabled``) it redraws one line; otherwise it logs at
    INFO every ``log_every`` fraction of the work. ``close()`` logs a summary line.
    """

    def __init__(self, total: int, desc: str, *, logger: logging.Logger | None = None,
                 enabled: bool = True, log_every: float = 0.25):
        self.total, self.desc = max(int(total), 1), desc
        self.log = logger or logging.getLogger("prismflow")
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.step_every = max(1, int(self.total * log_every))
        self.done = 0
        self.t0 = time.perf_counter()

    def update(self, n: int = 1, **status) -> None:
        self.done += n
        if not self.enabled:
            return
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in status.items())
        if self.tty:
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.desc} [{bar:<30}] {self.done}/{self.total} {extra}")
            sys.stderr.flush()
        elif self.done % self.step_every == 0 or self.done == self.total:
            self.log.info("%s: %d/%d %s", self.desc, self.done, self.total, extra)

    def close(self, summary: str = "") -> float:
        """Finish; returns elapsed seconds."""
        dt = time.perf_counter() - self.t0
        if self.enabled and self.tty:
            sys.stderr.write("\n")
        if self.enabled:
            self.log.info("%s: done in %.2f s %s", self.desc, dt, summary)
        return dt
