"""Staff accounts from the admin console: the same operations as ``machiai admin`` (one
transaction each, with its audit row, moving the generation where rights are taken away),
done by an administrator within their own municipality and audited under their name.

Passwords are generated here and shown once; a person changes nothing by choosing one."""

from __future__ import annotations

from dataclasses import dataclass

from booking.services.context import Ctx
from booking.store import pg
from booking.store.pg_staff import municipality_clinics
from machiai import accounts
from machiai.accounts import AccountRefused, Actor, StaffAccount
from machiai.tokens import StaffClaims

__all__ = ["AccountRefused", "StaffAccount"]


@dataclass(frozen=True, slots=True)
class ClinicChoice:
    clinic_id: str
    name_ja: str
    name_en: str


def _actor(admin: StaffClaims) -> Actor:
    return Actor("staff", admin.staff_id, admin.municipality_code)


async def list_accounts(ctx: Ctx, admin: StaffClaims) -> list[StaffAccount]:
    async with pg.acquire(ctx.pool) as conn:
        return await accounts.list_staff(conn, admin.municipality_code)


async def clinics(ctx: Ctx, admin: StaffClaims) -> list[ClinicChoice]:
    async with pg.acquire(ctx.pool) as conn:
        rows = await municipality_clinics(conn, admin.municipality_code)
    return [ClinicChoice(*row) for row in rows]


async def add(
    ctx: Ctx, admin: StaffClaims, login: str, display_name: str, role: str, clinic: str | None
) -> tuple[StaffAccount, str]:
    """The new account and its password (generated; shown once, stored only hashed)."""
    password = accounts.new_password()
    async with pg.acquire(ctx.pool) as conn:
        account = await accounts.add_staff(
            conn, login, admin.municipality_code, role, clinic, password, display_name,
            _actor(admin),
        )  # fmt: skip
    return account, password


async def deactivate(ctx: Ctx, admin: StaffClaims, login: str) -> StaffAccount:
    async with pg.acquire(ctx.pool) as conn:
        account, _ = await accounts.deactivate_staff(conn, login, _actor(admin))
    return account


async def change_role(
    ctx: Ctx, admin: StaffClaims, login: str, role: str, clinic: str | None
) -> StaffAccount:
    async with pg.acquire(ctx.pool) as conn:
        _, after = await accounts.change_role(conn, login, role, clinic, _actor(admin))
    return after


async def reset_password(ctx: Ctx, admin: StaffClaims, login: str) -> str:
    password = accounts.new_password()
    async with pg.acquire(ctx.pool) as conn:
        await accounts.reset_password(conn, login, password, _actor(admin))
    return password
