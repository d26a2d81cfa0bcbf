"""Basic-auth users: how passwords are kept."""

from __future__ import annotations

from tasktrail.auth.users import hash_password, verify_password


def test_passwords_are_salted_and_slow_hashed() -> None:
    one, two = hash_password("secret"), hash_password("secret")
    assert one != two  # salted
    assert one.startswith("scrypt$32768$8$1$")
    assert verify_password("secret", one)
    assert not verify_password("Secret", one)
    assert not verify_password("secret", "garbage")
