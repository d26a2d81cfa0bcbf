"""Live log tails: one feed per followed task, shared by all its followers.

A feed reads each new batch of entries from the store once, when the task
changes (a write in this process, or one another process made, as the change
feed sees it), and keeps the most recent entries in a bounded buffer. Each
follower keeps only a cursor (the last entry id it sent): it takes what the
buffer holds after its cursor, or, when it is behind the buffer (a slow
reader, or a resume from far back), reads the store itself until it has
caught up. So followers cost no store read each, a slow follower slows no one
else and holds no memory of its own, and every follower gets every entry once,
in order: entry ids increase in commit order, and a cursor only moves forward.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tasktrail.core import errors, metrics
from tasktrail.core.model import Access, LogEntry, Status, Task, now_us
from tasktrail.core.storage import Snapshot
from tasktrail.core.tasks import EVERYTHING, TaskCore, within_text

log = logging.getLogger(__name__)
T = TypeVar("T")


# The text all cached frames of one cache hold at most (characters).
CACHE_TEXT = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FollowSettings:
    # A heartbeat frame after this long without a frame (seconds): well inside
    # Envoy's stream idle timeout (5 min) and load balancers' (often 60 s).
    heartbeat: float = 10.0
    # Entries a feed keeps for its followers, and their text at most (characters);
    # a follower behind them reads the store.
    buffer: int = 4096
    buffer_text: int = 8 * 1024 * 1024
    # Entries in one frame at most, and their text (an answer stays well inside gRPC's 4 MiB).
    batch: int = 500
    batch_text: int = 512 * 1024

    # Followers woken in one event-loop iteration after a change: writes arriving
    # meanwhile wait for one stage rather than the whole fan-out.
    wake_stage: int = 64
    # The longest a feed waits for its followers to finish one wake-up before the next (seconds).
    settle_max: float = 0.1
    # Frames a second one process aims to send at most, over all its followers.
    frame_rate: float = 100_000.0


@dataclass(frozen=True, slots=True)
class Entries:
    task_id: str
    entries: list[LogEntry]


class BatchCache(Generic[T]):
    """The followers of one task mostly send the same batch: each form of it
    (a gRPC frame, an NDJSON or SSE chunk) is made once. Bounded by count and
    by text; oldest first out."""

    __slots__ = ("_items", "_max_text", "_size", "_text")

    def __init__(self, size: int = 64, max_text: int = CACHE_TEXT) -> None:
        self._size = size
        self._max_text = max_text
        self._text = 0
        self._items: dict[tuple[str, str, str, str, int], tuple[T, int]] = {}

    def get(self, frame: Entries, form: str, make: Callable[[], T]) -> T:
        batch = frame.entries
        key = (frame.task_id, form, batch[0].entry_id, batch[-1].entry_id, len(batch))
        hit = self._items.get(key)
        if hit is not None:
            return hit[0]
        made = make()
        text = sum(e.size for e in batch)
        while self._items and (len(self._items) >= self._size or self._text + text > self._max_text):
            self._text -= self._items.pop(next(iter(self._items)))[1]
        if text <= self._max_text:
            self._items[key] = (made, text)
            self._text += text
        return made


@dataclass(frozen=True, slots=True)
class Beat:
    at: int


@dataclass(frozen=True, slots=True)
class Ended:
    status: Status
    last_entry_id: str | None


@dataclass(frozen=True, slots=True)
class Broken:
    """The follow cannot go on; the client resumes after its last entry."""

    error: errors.CoreError


Frame = Entries | Beat | Ended | Broken


def _entries_after(task_id: str, after: str | None, limit: int) -> Callable[[Snapshot], list[LogEntry]]:
    return lambda r: r.log_forward_after(task_id, after, limit)


class Stopping(errors.Unavailable):
    reason = errors.SERVER_STOPPING


class TaskFeed:
    """The entries of one task after `base`, read once for all its followers."""

    def __init__(self, hub: LogHub, task: Task) -> None:
        self.hub = hub
        self.task_id = task.task_id
        self.status = task.status
        self.task_last: str | None = task.last_entry_id
        # The buffer holds the entries in (base, read_to], in order. base None:
        # from the start of the log (nothing was there or evicted before it).
        self.base: str | None = task.last_entry_id
        self.read_to: str | None = task.last_entry_id
        self.ids: list[str] = []
        self.entries: list[LogEntry] = []
        self.text = 0
        self.gone: errors.CoreError | None = None
        self.followers = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._pump: asyncio.Task[None] | None = None
        self._last_wake = 0.0
        self._settling: asyncio.Event | None = None

    def waiter(self) -> asyncio.Future[None]:
        """A future the next change resolves. Take it before looking, so that no
        change between the look and the wait goes unnoticed."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if self._settling is not None and self._settled():
            self._settling.set()
        return future

    @property
    def finished(self) -> bool:
        """The task has ended and every entry of its (sealed) log has been read."""
        return self.status.terminal and self.read_to == self.task_last

    def _announce(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._wake(waiters)

    def _wake(self, waiters: list[asyncio.Future[None]]) -> None:
        """Wake followers a stage at a time, one loop iteration each, so that a
        write arriving meanwhile waits for one stage, not for the whole fan-out."""
        stage = self.hub.settings.wake_stage
        for future in waiters[:stage]:
            if not future.done():
                future.set_result(None)
        if len(waiters) > stage:
            asyncio.get_running_loop().call_soon(self._wake, waiters[stage:])

    def start(self) -> None:
        self._pump = asyncio.create_task(self._run(), name=f"feed {self.task_id}")

    @property
    def running(self) -> bool:
        return self._pump is not None and not self._pump.done()

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._announce()

    async def _run(self) -> None:
        with self.hub.core.feed.subscription(self.task_id) as touched:
            while not self.finished:
                await self._settle()
                touched.clear()
                try:
                    await self._catch_up()
                except errors.NotFound as exc:  # expired and swept meanwhile
                    self.gone = exc
                    self._announce()
                    return
                except errors.Unavailable:
                    await asyncio.sleep(0.5)  # the store is away (it says so itself): look again soon
                    continue
                except Exception:
                    log.exception("feed of task %s failed; trying again", self.task_id)
                    await asyncio.sleep(0.5)
                    continue
                if not self.finished:
                    # Also a tick now and then, so that idle followers send heartbeats
                    # without a timer each.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.hub.settings.heartbeat / 2):
                            await touched.wait()
                    if not touched.is_set():
                        self._announce()

    async def _settle(self) -> None:
        """Pace the wake-ups: at most `frame_rate` frames a second for the whole
        process, and not before most followers are done with the last wake-up
        (up to a bound). Under a saturated fan-out, new entries then go out in
        fewer, larger frames, and the frames leave room for writes: every frame
        is a completion gRPC's single poller thread hands to the event loop, and
        an append's own completions queue behind them."""
        loop = asyncio.get_running_loop()
        settings = self.hub.settings
        gap = self.hub.followers / settings.frame_rate
        wait = self._last_wake + gap - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if not self._settled():
            self._settling = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.settle_max):
                    await self._settling.wait()
            self._settling = None
        self._last_wake = loop.time()

    def _settled(self) -> bool:
        """Most followers are back to waiting for the next change."""
        return self.followers - len(self._waiters) <= self.followers // 10

    async def _catch_up(self) -> None:
        core = self.hub.core
        # The task first, then its entries: once it reads terminal, its log is sealed.
        task = await core.get_task(self.task_id, EVERYTHING, fresh=True)
        self.status, self.task_last = task.status, task.last_entry_id
        while self.task_last is not None and (self.read_to is None or self.read_to < self.task_last):
            batch = await core.store.read(_entries_after(self.task_id, self.read_to, self.hub.settings.batch))
            if not batch:
                break
            self._keep(batch)
            self._announce()
        self._announce()

    def _keep(self, batch: list[LogEntry]) -> None:
        settings = self.hub.settings
        self.entries.extend(batch)
        self.ids.extend(e.entry_id for e in batch)
        self.text += sum(e.size for e in batch)
        self.read_to = batch[-1].entry_id
        extra = len(self.entries) - settings.buffer
        while self.text - sum(e.size for e in self.entries[: max(extra, 0)]) > settings.buffer_text:
            extra = max(extra, 0) + max(1, len(self.entries) // 8)  # the oldest eighth more, until it fits
        if extra > 0:
            extra = min(extra, len(self.entries))
            self.base = self.ids[extra - 1]
            self.text -= sum(e.size for e in self.entries[:extra])
            del self.entries[:extra]
            del self.ids[:extra]

    def after(self, cursor: str | None, limit: int) -> list[LogEntry] | None:
        """The buffered entries after `cursor`; None when the cursor is behind the buffer."""
        if cursor is not None and self.read_to is not None and cursor >= self.read_to:
            return []
        if self.base is not None and (cursor is None or cursor < self.base):
            return None
        start = 0 if cursor is None else bisect.bisect_right(self.ids, cursor)
        return within_text(self.entries[start : start + limit], self.hub.settings.batch_text)


class LogHub:
    def __init__(self, core: TaskCore, settings: FollowSettings | None = None) -> None:
        self.core = core
        self.settings = settings or FollowSettings()
        self.feeds: dict[str, TaskFeed] = {}
        self.stopping = False
        # Followers of every feed, kept as they come and go.
        self.followers = 0

    async def close(self) -> None:
        """Tell every follower the server is stopping: they resume elsewhere."""
        self.stopping = True
        for feed in list(self.feeds.values()):
            await feed.stop()

    async def open(self, task_id: str, access: Access) -> Task:
        """The task to follow: NOT_FOUND when the caller may not see it (check this
        first, so that the refusal is a plain error rather than a frame)."""
        return await self.core.get_task(task_id, access, fresh=True)

    async def follow(self, task: Task, after: str | None) -> AsyncIterator[Frame]:
        """One follower's frames, from the task `open` returned."""
        task_id = task.task_id
        feed = self.feeds.get(task_id)
        if feed is None:
            feed = self.feeds[task_id] = TaskFeed(self, task)
            feed.start()
        feed.followers += 1
        self.followers += 1
        metrics.follower(1)
        try:
            async for frame in self._frames(feed, after):
                yield frame
        finally:
            feed.followers -= 1
            self.followers -= 1
            metrics.follower(-1)
            if feed.followers == 0 and self.feeds.get(task_id) is feed:
                del self.feeds[task_id]
                await feed.stop()

    async def _frames(self, feed: TaskFeed, cursor: str | None) -> AsyncIterator[Frame]:
        settings = self.settings
        loop = asyncio.get_running_loop()
        last_frame = loop.time()
        changed: asyncio.Future[None] | None = None
        while True:
            if self.stopping:
                yield Broken(Stopping("the server is stopping: resume after the last entry you got"))
                return
            # One waiter at a time: a pending one still hears of every change after it was taken.
            if changed is None or changed.done():
                changed = feed.waiter()
            batch = feed.after(cursor, settings.batch)
            if batch is None:  # behind the buffer: read the store directly until caught up
                read = await self.core.store.read(_entries_after(feed.task_id, cursor, settings.batch))
                batch = within_text(read, settings.batch_text)
            if batch:
                cursor = batch[-1].entry_id
                last_frame = loop.time()
                metrics.frame_sent(batch[0].entry_id)
                yield Entries(feed.task_id, batch)
                continue
            if feed.gone is not None:
                yield Broken(feed.gone)
                return
            if feed.finished:
                yield Ended(feed.status, feed.task_last)
                return
            if loop.time() - last_frame >= settings.heartbeat * 0.9:
                last_frame = loop.time()
                yield Beat(now_us())
                continue
            if feed.running:
                await changed  # the feed ticks every half heartbeat, so this wait is bounded
            else:  # a finished feed no longer ticks: a follower still behind keeps its own time
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.heartbeat):
                        await asyncio.shield(changed)
