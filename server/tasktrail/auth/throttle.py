"""Failed credential checks, counted per client address and per user name.

Two counts: a client address's failures of any kind (not for loopback: a
caller on the host itself is past any network limit already), and a user
name's failed passwords from one address (so that guessing one user's
password is slow from anywhere, while the real user, from another address, is
never locked out by someone else's guesses).

The counts live in the store (the rate-limit table), so every server process
of a deployment counts the same failures. The decision to refuse is cheap: a
process that sees a count pass its limit remembers the address (or user) as
blocked until the window ends, and refuses it at once, before any credential
is read or any password hashed. A success costs nothing here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tasktrail.core import errors
from tasktrail.store import Store
from tasktrail.store.ratelimit import SharedWindow


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    # Failed checks a client address may make in a window before it is refused.
    per_address: int = 100
    # Failed password checks for one user name from one address in a window.
    per_user: int = 20
    window: float = 300.0


class Throttle:
    def __init__(
        self, store: Store, settings: ThrottleSettings | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings or ThrottleSettings()
        self._addresses = SharedWindow(store, self.settings.per_address, self.settings.window, clock)
        self._users = SharedWindow(store, self.settings.per_user, self.settings.window, clock)
        self._clock = clock
        # Who is refused until when (bounded: the oldest goes first).
        self._blocked: OrderedDict[str, float] = OrderedDict()

    async def check(self, address: str, user: str | None = None) -> None:
        """Refuse at once an address (or user) that failed too often lately. An
        address is known blocked from this process's own failures (a deployment
        of N processes lets at most N-1 more through); a user name is read from
        the store, so every process refuses its next guess alike."""
        now = self._clock()
        for window, key in self._keys(address, user):
            until = self._blocked.get(key)
            if until is not None and until <= now:
                del self._blocked[key]
                until = None
            if until is None and window is self._users:
                verdict = await window.peek(key)
                if not verdict.allowed:
                    until = self._block(key, verdict.retry_after)
            if until is not None:
                raise errors.ResourceExhausted(
                    "too many failed credential checks: retry later",
                    retry_after=max(1, int(until - now + 0.999)),
                    reason=errors.TOO_MANY_FAILURES,
                )

    async def failed(self, address: str, user: str | None = None) -> None:
        """Count a failed check against the address (and the user name)."""
        for window, key in self._keys(address, user):
            verdict = await window.hit(key)
            if not verdict.allowed:
                self._block(key, verdict.retry_after)

    def _block(self, key: str, seconds: int) -> float:
        until = self._clock() + seconds
        self._blocked[key] = until
        self._blocked.move_to_end(key)
        while len(self._blocked) > 10_000:
            self._blocked.popitem(last=False)
        return until

    def _keys(self, address: str, user: str | None) -> list[tuple[SharedWindow, str]]:
        keys = [] if _loopback(address) else [(self._addresses, "fail:addr:" + address[:100])]
        if user:
            # A user name may be long and anything: a hash keeps the key short.
            keys.append((self._users, "fail:user:" + hashlib.sha256(f"{address}\x00{user}".encode()).hexdigest()))
        return keys


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
