"""Development credentials, so that every documented command runs at once on
a new store: a writer token of every scope, a cloud account with a user key,
and a basic-auth user. Each is kept in the data directory (mode 0600) and made
again when it no longer works."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tasktrail.auth import accounts, tokens, users
from tasktrail.auth.principal import Role
from tasktrail.core.model import Scope
from tasktrail.store import Store
from tasktrail.store.statements import WriteQueries

TOKEN_FILE = "dev-token"
TOKEN_NAME = "development (tasktrail up)"
ACCOUNT_FILE = "dev-account.env"
USER_FILE = "dev-user"
USER = "admin@tasktrail.local"


@dataclass(frozen=True, slots=True)
class DevAccount:
    account_id: str
    api_key: str
    secret_key: str
    path: Path


def _keep(path: Path, text: str) -> None:
    """Write a secret file, readable by its owner only from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)


async def ensure_token(store: Store, data_dir: Path) -> str:
    """The development token: a writer of every scope, kept in <data-dir>/dev-token."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token and await tokens.authenticate(store, token) is not None:
            return token
    grants = [s.value for s in Scope]
    token = await store.write(lambda tx: tokens.create_token(tx, TOKEN_NAME, Role.WRITER, grants))
    _keep(path, token + "\n")
    return token


async def ensure_account(store: Store, data_dir: Path) -> DevAccount:
    """A development account and a user key, kept in <data-dir>/dev-account.env
    (shell syntax: `. data/dev-account.env`)."""
    path = data_dir / ACCOUNT_FILE
    if path.exists():
        saved = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        found = DevAccount(saved.get("ACCOUNT_ID", ""), saved.get("ACCOUNT_KEY", ""), saved.get("SECRET_KEY", ""), path)
        works = found.api_key and found.secret_key
        if works and await accounts.authenticate(store, found.api_key, found.secret_key) is not None:
            return found

    def make(tx: WriteQueries) -> tuple[str, str, str]:
        account_id, api_key = accounts.create_account(tx, "development")
        _, secret = accounts.create_key(tx, account_id, "development")
        return account_id, api_key, secret

    account_id, api_key, secret = await store.write(make)
    _keep(path, f"ACCOUNT_ID={account_id}\nACCOUNT_KEY={api_key}\nSECRET_KEY={secret}\n")
    return DevAccount(account_id, api_key, secret, path)


async def ensure_user(store: Store, data_dir: Path) -> tuple[str, str]:
    """A development user for the enterprise API, `user:password` kept in <data-dir>/dev-user."""
    path = data_dir / USER_FILE
    if path.exists():
        name, _, password = path.read_text().strip().partition(":")
        if name and await users.Verifier(store).authenticate(name, password) is not None:
            return name, password
    password = secrets.token_urlsafe(18)

    def make(tx: WriteQueries) -> None:
        users.delete_user(tx, USER)
        users.create_user(tx, USER, password)

    await store.write(make)
    _keep(path, f"{USER}:{password}\n")
    return USER, password
