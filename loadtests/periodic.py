"""A thread that does something every interval while a run lasts (CPU sampling, probing)."""

from __future__ import annotations

import threading


class Periodic:
    """Calls ``tick`` every ``interval_s`` between ``start`` and ``stop``, after ``setup``
    (which may give up by returning False, e.g. when stopped before it could finish)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopped."""
        self._stop.wait(seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def setup(self) -> bool:
        return True

    def tick(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass

    def _run(self) -> None:
        try:
            if self.setup():
                while not self.stopping:
                    self.tick()
                    self.pause(self.interval_s)
        finally:
            self.teardown()
