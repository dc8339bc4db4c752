"""Dynamic batching: concurrent requests for one model share one ONNX Runtime call.

The first request to arrive opens a batch with a deadline `max_delay_s` away; requests
that arrive before it (or until `max_size` rows are waiting) join it; then one
`session.run` serves them all and each gets its own rows back. All on the event loop:
there is nothing to lock, and ORT's call is short next to the wait it saves.

The deadline is checked once per event-loop turn (`call_soon`), not with `call_later`:
both asyncio and uvloop round timers to whole milliseconds (uvloop fires a 500 µs timer
at once, asyncio after ~1.4 ms, measured), which would make a delay of a few hundred
microseconds mean something else. While a batch is open the loop keeps polling sockets,
which is what gathers the requests that join it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from services.predict.model import OnnxModel


class Batcher:
    def __init__(
        self,
        model: OnnxModel,
        *,
        max_delay_s: float,
        max_size: int,
        on_batch: Callable[[OnnxModel, int, int], None] | None = None,
    ) -> None:
        self.model = model
        self.max_delay_s = max_delay_s
        self.max_size = max_size
        self._on_batch = on_batch
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._deadline = 0.0
        self._tick: asyncio.Handle | None = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Outputs for `x` (rows of the model's input), computed with whatever joins it."""
        if len(x) >= self.max_size:
            return self.model.run(x)  # already a batch of its own
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((x, future))
        self._rows += len(x)
        if self._rows >= self.max_size:
            self._flush()
        elif self._tick is None:
            self._deadline = time.perf_counter() + self.max_delay_s
            self._tick = loop.call_soon(self._check, loop)
        return await future

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        if time.perf_counter() >= self._deadline:
            self._flush()
        else:
            self._tick = loop.call_soon(self._check, loop)

    def _flush(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        pending, rows = self._pending, self._rows
        self._pending, self._rows = [], 0
        if not pending:
            return
        try:
            if len(pending) == 1:
                y = self.model.run(pending[0][0])
            else:
                y = self.model.run(np.concatenate([x for x, _ in pending]))
        except Exception as exc:
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for x, future in pending:
            end = start + len(x)
            if not future.done():  # the client may have gone away
                future.set_result(y[start:end])
            start = end
        if self._on_batch is not None:
            self._on_batch(self.model, len(pending), rows)
