"""``vidbox user ...``: manage accounts from the shell (works while the server runs)."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from vidbox.auth import accounts
from vidbox.auth.users import list_users
from vidbox.cli_options import box_options, box_settings
from vidbox.errors import VidboxError
from vidbox.services import Services, open_services

T = TypeVar("T")


def _run(ctx: click.Context, action: Callable[[Services], Awaitable[T]]) -> T:
    settings = box_settings()

    async def go() -> T:
        async with open_services(settings) as services:
            return await action(services)

    try:
        return asyncio.run(go())
    except VidboxError as exc:
        raise click.ClickException(exc.detail) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat it: "):
        raise click.ClickException("the two passwords differ")
    return first


@click.group()
@box_options
def user() -> None:
    """Add, list and change accounts."""


@user.command("create")
@box_options
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--admin", is_flag=True, help="Make the account an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def create(ctx: click.Context, email: str, name: str, admin: bool, password_stdin: bool) -> None:
    """Create an account."""
    password = _read_password(password_stdin)

    async def action(services: Services) -> str:
        # Whoever runs the CLI is the box's admin, who vouches for the address.
        created = await accounts.add_account(
            services.db, email=email, password=password, name=name, is_admin=admin
        )
        return created.email

    click.echo(f"Created {'admin ' if admin else ''}account {_run(ctx, action)}.")


@user.command("list")
@box_options
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List accounts."""

    async def action(services: Services) -> list[tuple[str, str, str]]:
        async with services.db.read() as session:
            users = await list_users(session)
        return [
            (
                u.email,
                u.name,
                ",".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled)) if on),
            )
            for u in users
        ]

    rows = _run(ctx, action)
    if not rows:
        click.echo("No accounts yet.")
    for email, name, flags in rows:
        click.echo(f"{email}\t{name}\t{flags}".rstrip())


@user.command("set-password")
@box_options
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def set_password_cmd(ctx: click.Context, email: str, password_stdin: bool) -> None:
    """Set an account's password (signs it out everywhere and revokes its API tokens)."""
    password = _read_password(password_stdin)

    async def action(services: Services) -> None:
        await accounts.change_password(services.db, password, email=email)

    _run(ctx, action)
    click.echo(f"Password changed for {email.strip().lower()}.")


def _set_disabled(ctx: click.Context, email: str, disabled: bool) -> None:
    change = accounts.disable_user if disabled else accounts.enable_user

    async def action(services: Services) -> None:
        await change(services.db, accounts.CONSOLE, email=email)

    _run(ctx, action)
    click.echo(f"{email.strip().lower()} is {'disabled' if disabled else 'enabled'}.")


@user.command("disable")
@box_options
@click.argument("email")
@click.pass_context
def disable(ctx: click.Context, email: str) -> None:
    """Stop an account from signing in and revoke its sessions and tokens."""
    _set_disabled(ctx, email, True)


@user.command("enable")
@box_options
@click.argument("email")
@click.pass_context
def enable(ctx: click.Context, email: str) -> None:
    """Let a disabled account sign in again."""
    _set_disabled(ctx, email, False)


@user.command("setup-link")
@box_options
@click.pass_context
def setup_link(ctx: click.Context) -> None:
    """Print a new one-time link to create the first admin (the link the server printed stops
    working), for a box that has no account yet."""
    from vidbox.app import setup_url
    from vidbox.auth.firstrun import replace_setup_token

    async def action(services: Services) -> str | None:
        return await replace_setup_token(services.db, services.secret_key)

    token = _run(ctx, action)
    if token is None:
        raise click.ClickException(
            "this box already has an account: sign in, or add one with `vidbox user create`"
        )
    click.echo(
        f"Open this one-time link to create the first admin: {setup_url(box_settings(), token)}"
    )
