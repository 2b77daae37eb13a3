"""Progress bars on a terminal: one per blob in flight and one for the whole transfer (tqdm).
When stderr is not a terminal (scripts, CI, `--json`) nothing is drawn at all."""

from __future__ import annotations

import contextlib
import sys
import threading

from tqdm import tqdm


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def reset_to(self, n: int) -> None:
        pass


class Progress:
    """Thread-safe: worker threads each hold one blob bar; all feed the overall bar."""

    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled if enabled is not None else _is_terminal(self.stream)
        self.total: tqdm | None = None
        self._slots: list[int] = []
        self._lock = threading.Lock()

    def start(self, total_bytes: int, blobs: int, slots: int) -> None:
        if not self.enabled:
            return
        self._slots = list(range(slots, 0, -1))
        self.total = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, position=0,
                          desc=f"total ({blobs} blobs)", file=self.stream, dynamic_ncols=True, leave=True,
                          bar_format="{desc:<24} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {rate_fmt}")

    @contextlib.contextmanager
    def blob(self, digest: str, size: int):
        if not self.enabled or self.total is None:
            yield _NullBar()
            return
        with self._lock:
            position = self._slots.pop() if self._slots else None
        bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, position=position,
                   desc=digest.split(":", 1)[-1][:12], file=self.stream, leave=False, dynamic_ncols=True,
                   bar_format="{desc:<24} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {rate_fmt}")
        handle = _Bar(bar, self.total)
        try:
            yield handle
            handle.finish(size)
        finally:
            bar.close()
            with self._lock:
                if position is not None:
                    self._slots.append(position)

    def skip(self, size: int) -> None:
        """A blob that did not need transferring (already there, or mounted)."""
        if self.total is not None:
            self.total.update(size)

    def close(self) -> None:
        if self.total is not None:
            self.total.close()
            self.total = None


class _Bar:
    def __init__(self, bar: tqdm, total: tqdm):
        self.bar = bar
        self.total = total
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        self.total.update(n)

    def reset_to(self, n: int) -> None:
        """After a resume the transfer continues from byte n; rewind both bars to match."""
        delta = n - self.done
        self.done = n
        self.bar.update(delta)
        self.total.update(delta)

    def finish(self, size: int) -> None:
        if self.done != size:
            self.reset_to(size)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
