"""Account operations, one function each, shared by the web pages and ``vidbox user``.

Each is one unit of work: a change and the sign-outs it implies commit together, so there is
no moment in which a disabled account, or an old password's sign-in, still works because the
second of two transactions has not run yet. Signed-in principals are cached for a couple of
seconds (vidbox.cache), so each operation clears that cache after its commit.

``actor`` is the admin acting through the web, or ``CONSOLE`` (None) for the shell: see
``users.change_flags`` for the rules that apply to web actors only.

An account is named by ``user_id`` (the web's forms) or ``email`` (the shell), exactly one.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.login import WINDOW as PASSWORD_WINDOW
from vidbox.auth.passwords import verify_password
from vidbox.auth.ratelimit import RateLimiter
from vidbox.auth.sessions import EVERY_KIND, revoke_sessions_in
from vidbox.auth.users import change_flags, check_name, create_user, get_user, set_password
from vidbox.db import Database
from vidbox.errors import BadRequest, NotFound
from vidbox.models import User
from vidbox.notify import AUTH, announce

CONSOLE: User | None = None


async def _account(session: AsyncSession, user_id: str | None, email: str | None) -> User:
    if (user_id is None) == (email is None):
        raise TypeError("name the account by user_id or by email")
    if email is not None:
        return await get_user(session, email)
    user = await session.get(User, user_id) if user_id and len(user_id) <= 32 else None
    if user is None:
        raise NotFound("No such user.")
    return user


async def add_account(
    db: Database, *, email: str, password: str, name: str = "", is_admin: bool = False
) -> User:
    """An account made by an admin (the admin page or the shell): an admin typed the
    address, so it counts as verified."""
    async with db.session() as session:
        return await create_user(
            session,
            email=email,
            password=password,
            name=name,
            is_admin=is_admin,
            email_verified=True,
        )


async def set_flags(
    db: Database,
    actor: User | None,
    *,
    user_id: str | None = None,
    email: str | None = None,
    disabled: bool | None = None,
    is_admin: bool | None = None,
    email_verified: bool | None = None,
) -> User:
    """Change an account's flags. Disabling also revokes every session and API token."""
    async with db.session() as session:
        user = await _account(session, user_id, email)
        await change_flags(
            session,
            actor,
            user,
            disabled=disabled,
            is_admin=is_admin,
            email_verified=email_verified,
        )
        if disabled:
            await revoke_sessions_in(session, user.id, kinds=EVERY_KIND)
        announce(session, AUTH)  # signed-in principals carry the old flags
    return user


async def disable_user(
    db: Database, actor: User | None, *, user_id: str | None = None, email: str | None = None
) -> User:
    """Stop an account from signing in, and end its sessions and API tokens."""
    return await set_flags(db, actor, user_id=user_id, email=email, disabled=True)


async def enable_user(
    db: Database, actor: User | None, *, user_id: str | None = None, email: str | None = None
) -> User:
    return await set_flags(db, actor, user_id=user_id, email=email, disabled=False)


async def change_password(
    db: Database, password: str, *, user_id: str | None = None, email: str | None = None
) -> User:
    """Set a new password. It ends every sign-in of the account: whoever knew the old one is
    out, and so is any API token they made with it. (Checking the current password, for a
    user changing their own, is the caller's part.)"""
    async with db.session() as session:
        user = await _account(session, user_id, email)
        await set_password(session, user, password)
        await revoke_sessions_in(session, user.id, kinds=EVERY_KIND)
    return user


# A stolen session must not become a way to guess the password: wrong current passwords
# count against the account, as failed sign-ins do.
PASSWORD_CHECKS = 8
WRONG_CURRENT = "Your current password is not right."


async def change_own_password(db: Database, user: User, *, current: str, new: str) -> User:
    """A signed-in user's change of their own password: the current one first (rate limited,
    TooManyRequests past the limit), then ``change_password``."""
    limiter, key = RateLimiter(db), f"password-check:{user.id}"
    counted = await limiter.take(key, limit=PASSWORD_CHECKS, window=PASSWORD_WINDOW)
    if not await verify_password(user.password_hash, current):
        raise BadRequest(WRONG_CURRENT)
    await limiter.give_back(counted)
    return await change_password(db, new, user_id=user.id)


async def rename_account(db: Database, user_id: str, name: str) -> User:
    """Set an account's display name."""
    name = check_name(name)
    async with db.session() as session:
        user = await _account(session, user_id, None)
        user.name = name
        session.add(user)
        announce(session, AUTH)  # signed-in principals carry the old name
    return user
