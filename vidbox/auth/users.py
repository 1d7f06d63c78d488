"""User accounts: creation, lookup, passwords, admin and disabled flags."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.auth.passwords import hash_password, password_problem
from vidbox.errors import Conflict, NotFound, ValidationFailed
from vidbox.models import User
from vidbox.timefmt import iso_z

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;.]{2,}$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    if not email:
        return "Enter an email address."
    if len(email) > 320 or not _EMAIL.match(email):
        return "This is not an email address."
    return None


def check_email(email: str) -> str:
    email = normalise_email(email)
    problem = email_problem(email)
    if problem:
        raise ValidationFailed.field("email", problem)
    return email


def check_password(password: str, *, email: str = "", name: str = "") -> None:
    problem = password_problem(password, email=email, name=name)
    if problem:
        raise ValidationFailed.field("password", problem)


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if len(name) > 200:
        raise ValidationFailed.field("name", "Use at most 200 characters for the name.")
    return name


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": iso_z(user.created_at),
    }


async def find_user(session: AsyncSession, email: str) -> User | None:
    return (await session.exec(select(User).where(User.email == normalise_email(email)))).first()


async def get_user(session: AsyncSession, email: str) -> User:
    user = await find_user(session, email)
    if user is None:
        raise NotFound(f"No account for {normalise_email(email)}.")
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str = "",
    is_admin: bool = False,
    email_verified: bool,
) -> User:
    """Validate and add a user inside the caller's transaction. ``email_verified`` has no
    default: each way in says whether the address is proven (vidbox.auth.verify)."""
    email = check_email(email)
    name = check_name(name)
    check_password(password, email=email, name=name)
    if await find_user(session, email):
        raise Conflict("An account with this email already exists.")
    user = User(
        email=email,
        name=name,
        password_hash=await hash_password(password),
        is_admin=is_admin,
        email_verified=email_verified,
    )
    session.add(user)
    await session.flush()
    return user


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    check_password(password, email=user.email, name=user.name)
    user.password_hash = await hash_password(password)
    session.add(user)


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.exec(select(User).order_by(col(User.created_at)))).all())


async def count_admins(session: AsyncSession) -> int:
    query = select(func.count()).select_from(User).where(col(User.is_admin), ~col(User.disabled))
    return (await session.exec(query)).one()


async def change_flags(
    session: AsyncSession,
    actor: User | None,
    user: User,
    *,
    disabled: bool | None = None,
    is_admin: bool | None = None,
    email_verified: bool | None = None,
) -> User:
    """An admin's change to another account; through the web the box always keeps an active
    admin. ``actor`` None is the console (``vidbox user``): whoever runs it owns the box and
    can undo any change from there, so neither rule, which keeps the web usable, applies."""
    if actor is not None and user.id == actor.id and (disabled or is_admin is False):
        raise Conflict("You cannot disable yourself or remove your own admin rights.")
    if disabled is not None:
        user.disabled = disabled
    if is_admin is not None:
        user.is_admin = is_admin
    if email_verified is not None:
        user.email_verified = email_verified
    session.add(user)
    await session.flush()
    if actor is not None and await count_admins(session) == 0:
        raise Conflict("The box needs at least one active admin.")
    return user
