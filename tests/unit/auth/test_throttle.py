"""Failed credential checks: counted in the store, so every process refuses alike."""

from __future__ import annotations

import pytest

from tasktrail.auth.throttle import Throttle, ThrottleSettings
from tasktrail.core import errors
from tasktrail.store import Store, open_store

pytestmark = pytest.mark.anyio


async def test_an_address_that_fails_too_often_is_refused_by_every_process(store: Store, database_url: str) -> None:
    other_store = open_store(database_url)
    try:
        settings = ThrottleSettings(per_address=3, per_user=100, window=60.0)
        mine, theirs = Throttle(store, settings), Throttle(other_store, settings)
        for throttle in (mine, theirs, mine):
            await throttle.check("10.0.0.1")
            await throttle.failed("10.0.0.1")
        await theirs.failed("10.0.0.1")  # the fourth, counted in the store: over the limit
        with pytest.raises(errors.ResourceExhausted):
            await theirs.check("10.0.0.1")
        await mine.failed("10.0.0.1")  # the other process learns it at its next failure
        with pytest.raises(errors.ResourceExhausted) as refused:
            await mine.check("10.0.0.1")
        assert refused.value.reason == errors.TOO_MANY_FAILURES
        assert 1 <= refused.value.retry_after <= 60
        await theirs.check("10.0.0.2")  # another address is not refused
    finally:
        await other_store.close()


async def test_a_user_name_guessed_too_often_is_refused_to_that_address_only(store: Store) -> None:
    throttle = Throttle(store, ThrottleSettings(per_address=100, per_user=2, window=60.0))
    for _ in range(3):
        await throttle.failed("10.0.0.1", "ops@example.com")
    with pytest.raises(errors.ResourceExhausted):
        await throttle.check("10.0.0.1", "ops@example.com")
    await throttle.check("10.0.0.1", "other@example.com")
    await throttle.check("10.0.0.9", "ops@example.com")  # the real user, elsewhere, is not locked out


async def test_loopback_counts_per_user_only(store: Store) -> None:
    throttle = Throttle(store, ThrottleSettings(per_address=1, per_user=2, window=60.0))
    for _ in range(5):
        await throttle.failed("127.0.0.1")
    await throttle.check("127.0.0.1")  # the host itself: no address limit
    for _ in range(3):
        await throttle.failed("::1", "ops@example.com")
    with pytest.raises(errors.ResourceExhausted):
        await throttle.check("::1", "ops@example.com")


async def test_every_process_refuses_a_guessed_user_at_once(store: Store, database_url: str) -> None:
    """A user name's count is read from the store before each guess: another
    process refuses the very next one, not one more later."""
    other_store = open_store(database_url)
    try:
        settings = ThrottleSettings(per_address=100, per_user=2, window=60.0)
        mine, theirs = Throttle(store, settings), Throttle(other_store, settings)
        await mine.failed("10.0.0.1", "ops@example.com")
        await mine.failed("10.0.0.1", "ops@example.com")
        with pytest.raises(errors.ResourceExhausted):
            await theirs.check("10.0.0.1", "ops@example.com")
    finally:
        await other_store.close()
