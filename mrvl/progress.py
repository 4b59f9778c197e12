"""Progress of long steps on a terminal: one status line on stderr that rewrites itself
(`\\r`), shown only when stderr is a TTY, so piped and redirected runs stay quiet.

```python
with Progress("compile", enabled=True) as progress:
    progress.update("import")
    for k, item in enumerate(items):
        progress.update(f"@{item}", k, len(items))
```

A one-line message printed while a line is showing should go through `clear_line()` first
(the driver's notes and warnings do), so it starts on a clean line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_ACTIVE: list[Progress] = []


def clear_line() -> None:
    """Erase the status line being shown (if any) before other output goes to stderr."""
    for progress in _ACTIVE:
        progress.clear()


class Progress:
    """A status line `label: detail [k/n]` on `stream` (stderr), drawn at most every
    `interval` seconds; a no-op unless `enabled` and the stream is a terminal."""

    def __init__(self, label: str, *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 0.1):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled and isatty is not None and isatty())
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        if self.enabled:
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, detail: str, done: int | None = None, total: int | None = None,
               force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and self._shown and now - self._last < self.interval:
            return
        self._last = now
        count = f" [{done}/{total}]" if done is not None and total else ""
        self.stream.write(f"\r\033[K{self.label}: {detail}{count}")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def close(self) -> None:
        self.clear()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
