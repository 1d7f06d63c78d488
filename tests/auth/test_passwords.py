from __future__ import annotations

import asyncio

import pytest

from vidbox.auth.passwords import (
    _DUMMY_HASH,
    _hasher,
    hash_password,
    password_problem,
    verify_password,
)


def test_unknown_accounts_cost_the_same_as_known_ones() -> None:
    # Same parameters as real hashes, so verifying it takes as long as a real check.
    assert not _hasher.check_needs_rehash(_DUMMY_HASH)
    assert asyncio.run(verify_password(None, "anything at all")) is False


def test_hash_and_verify() -> None:
    stored = asyncio.run(hash_password("correct horse battery"))
    assert stored.startswith("$argon2id$")
    assert asyncio.run(verify_password(stored, "correct horse battery"))
    assert not asyncio.run(verify_password(stored, "correct horse batterY"))
    assert not asyncio.run(verify_password("not a hash", "x"))


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10"),
        ("password12345", "too easy to guess"),
        ("Qwertyuiop", "too easy to guess"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        # Found accepted by the old 18-word list: all on public breached-password lists.
        ("qwerty12345", "very common password"),
        ("iloveyou123", "commonly used password"),
        ("football123", "commonly used password"),
        ("letmein1234", "commonly used password"),
        ("hunter2hunter2", "too easy to guess"),
        ("Tr0ub4dor&3x", None),
        ("ann.smith-holiday", "email address or name"),
        ("correct horse battery", None),
    ],
)
def test_password_policy(password: str, problem: str | None) -> None:
    found = password_problem(password, email="ann.smith@example.org", name="Ann")
    assert (found is None) if problem is None else (problem in (found or ""))
