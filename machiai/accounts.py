"""Municipalities and staff accounts from the command line: ``machiai admin``.

Each change is one transaction with its audit row (``admin.municipality.added``,
``admin.staff.added``, ``.deactivated``, ``.role_changed``, ``.password_reset``; actor kind
``system``, actor ``machiai admin``: the audit log admits staff, resident and system actors).
A change that takes rights away (deactivate, role, new password) moves the staff member's
generation in the same statement, so every token of theirs stops working within 2 s
(machiai/staff_generation.py). A generated password is printed once and never stored in
clear; no command prints a password hash, nor writes one into the audit log.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from machiai import inputs
from machiai.migrate import apply_migrations
from machiai.passwords import hash_password
from machiai.pg import Conn
from machiai.staff_generation import CHECK_TTL_S
from machiai.tokens import STAFF_ROLES

ACTOR = "machiai admin"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, as the audit log names them: the CLI (``system``), or an
    administrator on the console (``staff``, their id), who acts only in their own
    municipality."""

    kind: str = "system"
    actor_id: str = ACTOR
    municipality: str | None = None


CLI = Actor()
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 200  # what booking's sign-in accepts
LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")  # staff.login's CHECK (migration 0001)
CODE = re.compile(inputs.MUNICIPALITY_CODE_PATTERN)
UUID = re.compile(inputs.UUID_PATTERN)
ROLES = ", ".join(sorted(STAFF_ROLES))
SIGNED_OUT = f"their sessions end within {CHECK_TTL_S:g} s"


class AccountRefused(ValueError):
    """The command was refused and nothing was changed; the message names the problem
    (``field``: the input at fault, for a form to show it beside)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class StaffAccount:
    staff_id: str
    login: str
    display_name: str
    municipality: str
    role: str
    clinic_id: str | None
    active: bool
    created_at: datetime

    def describe(self) -> str:
        clinic = f", clinic {self.clinic_id}" if self.clinic_id else ""
        return f"{self.login} ({self.role}, municipality {self.municipality}{clinic})"


_STAFF_COLUMNS = (
    "id::text AS staff_id, login, display_name, municipality_code AS municipality, "
    "role::text AS role, clinic_id::text AS clinic_id, active, created_at"
)


def new_password() -> str:
    """24 URL-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountRefused(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountRefused(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
    if not inputs.usable_text(password):
        raise AccountRefused("the password holds a character that cannot be stored (NUL)")
    return password


def check_login(login: str) -> str:
    if not LOGIN.match(login):
        raise AccountRefused(
            f"login {login!r} must be 3 to 64 of a-z, 0-9, '.', '_' and '-', starting with "
            "a letter or digit"
        )
    return login


def check_code(code: str) -> str:
    if not CODE.match(code):
        raise AccountRefused(f"municipality code {code!r} must be 6 digits")
    return code


def check_role(role: str, clinic: str | None) -> tuple[str, str | None]:
    """A role and clinic that fit together: clinic staff name their clinic, others none."""
    if role not in STAFF_ROLES:
        raise AccountRefused(f"unknown role {role!r} (one of: {ROLES})")
    if role == "clinic" and clinic is None:
        raise AccountRefused("role clinic needs --clinic CLINIC_UUID")
    if role != "clinic" and clinic is not None:
        raise AccountRefused(f"role {role} has no clinic: leave out --clinic")
    if clinic is not None:
        if not UUID.match(clinic):
            raise AccountRefused(f"clinic {clinic!r} is not a UUID")
        clinic = str(uuid.UUID(clinic))
    return role, clinic


async def on_database(dsn: str, work: Callable[[Conn], Awaitable[str]]) -> str:
    """``work`` on one connection to ``dsn``, migrated first (as ``seed-demo`` does: the
    first account is made on a fresh database); what it says to print."""
    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def add_municipality(conn: Conn, code: str, name_ja: str, name_en: str) -> str:
    check_code(code)
    for flag, name in (("--name-ja", name_ja), ("--name-en", name_en)):
        if not 1 <= len(name) <= 200 or not inputs.usable_text(name):
            raise AccountRefused(f"{flag} must be 1 to 200 characters")
    async with conn.transaction():
        added = await conn.fetchval(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, $2, $3) "
            "ON CONFLICT (code) DO NOTHING RETURNING code",
            code,
            name_ja,
            name_en,
        )
        if added is None:
            raise AccountRefused(f"municipality {code} exists already")
        await _audit(
            conn,
            code,
            "admin.municipality.added",
            code,
            after={"name_ja": name_ja, "name_en": name_en},
        )
    return f"added municipality {code} ({name_ja} / {name_en})"


async def add_staff(
    conn: Conn,
    login: str,
    municipality: str,
    role: str,
    clinic: str | None,
    password: str,
    display_name: str | None,
    actor: Actor = CLI,
) -> StaffAccount:
    check_login(login)
    check_code(municipality)
    role, clinic = check_role(role, clinic)
    check_password(password)
    if actor.municipality is not None and municipality != actor.municipality:
        raise AccountRefused(f"no municipality {municipality}")
    name = display_name or login
    if not 1 <= len(name) <= 200 or not inputs.usable_text(name):
        raise AccountRefused("--display-name must be 1 to 200 characters")
    password_hash = hash_password(password)
    async with conn.transaction():
        await _known_municipality(conn, municipality)
        if clinic is not None:
            await _known_clinic(conn, clinic, municipality)
        row = await conn.fetchrow(
            "INSERT INTO staff (municipality_code, login, display_name, role, clinic_id, "
            "password_hash) VALUES ($1, $2, $3, $4, $5::uuid, $6) "
            f"ON CONFLICT (login) DO NOTHING RETURNING {_STAFF_COLUMNS}",
            municipality,
            login,
            name,
            role,
            clinic,
            password_hash,
        )
        if row is None:
            raise AccountRefused(f"login {login!r} is taken already", "login_taken")
        account = StaffAccount(**dict(row))
        await _audit(
            conn,
            municipality,
            "admin.staff.added",
            account.staff_id,
            after={"login": login, "display_name": name, "role": role, "clinic_id": clinic},
            actor=actor,
        )
    return account


async def deactivate_staff(conn: Conn, login: str, actor: Actor = CLI) -> tuple[StaffAccount, bool]:
    """The account, and whether this call deactivated it (False: it was inactive already)."""
    async with conn.transaction():
        account = await _staff(conn, login, actor)
        _not_self(account, actor)
        if not account.active:
            return account, False
        await conn.execute(
            "UPDATE staff SET active = false, generation = generation + 1 WHERE id = $1::uuid",
            account.staff_id,
        )
        await _audit(
            conn,
            account.municipality,
            "admin.staff.deactivated",
            account.staff_id,
            before={"login": login, "active": True},
            after={"login": login, "active": False},
            actor=actor,
        )
    return replace(account, active=False), True


async def change_role(
    conn: Conn, login: str, role: str, clinic: str | None, actor: Actor = CLI
) -> tuple[StaffAccount, StaffAccount]:
    """(before, after); the same when nothing changed (nobody is signed out then)."""
    role, clinic = check_role(role, clinic)
    async with conn.transaction():
        before = await _staff(conn, login, actor)
        _not_self(before, actor)
        if (before.role, before.clinic_id) == (role, clinic):
            return before, before
        if clinic is not None:
            await _known_clinic(conn, clinic, before.municipality)
        await conn.execute(
            "UPDATE staff SET role = $2, clinic_id = $3::uuid, generation = generation + 1 "
            "WHERE id = $1::uuid",
            before.staff_id,
            role,
            clinic,
        )
        after = replace(before, role=role, clinic_id=clinic)
        await _audit(
            conn,
            before.municipality,
            "admin.staff.role_changed",
            before.staff_id,
            before={"login": login, "role": before.role, "clinic_id": before.clinic_id},
            after={"login": login, "role": role, "clinic_id": clinic},
            actor=actor,
        )
    return before, after


async def reset_password(conn: Conn, login: str, password: str, actor: Actor = CLI) -> StaffAccount:
    check_password(password)
    password_hash = hash_password(password)
    async with conn.transaction():
        account = await _staff(conn, login, actor)
        await conn.execute(
            "UPDATE staff SET password_hash = $2, generation = generation + 1 WHERE id = $1::uuid",
            account.staff_id,
            password_hash,
        )
        await _audit(
            conn,
            account.municipality,
            "admin.staff.password_reset",
            account.staff_id,
            after={"login": login},
            actor=actor,
        )
    return account


async def list_staff(conn: Conn, municipality: str | None) -> list[StaffAccount]:
    if municipality is not None:
        check_code(municipality)
        await _known_municipality(conn, municipality)
    rows = await conn.fetch(
        f"SELECT {_STAFF_COLUMNS} FROM staff WHERE $1::text IS NULL OR municipality_code = $1 "
        "ORDER BY municipality_code, login",
        municipality,
    )
    return [StaffAccount(**dict(r)) for r in rows]


def describe_list(accounts: list[StaffAccount]) -> str:
    if not accounts:
        return "no staff"
    head = ("login", "municipality", "role", "clinic", "status", "created")
    rows = [
        (
            a.login,
            a.municipality,
            a.role,
            a.clinic_id or "-",
            "active" if a.active else "inactive",
            a.created_at.date().isoformat(),
        )
        for a in accounts
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    )


async def _staff(conn: Conn, login: str, actor: Actor) -> StaffAccount:
    """The account, locked; an administrator sees only their municipality's (another's
    answers as unknown: no oracle across tenants)."""
    row = await conn.fetchrow(
        f"SELECT {_STAFF_COLUMNS} FROM staff WHERE login = $1 "
        "AND ($2::text IS NULL OR municipality_code = $2) FOR UPDATE",
        login,
        actor.municipality,
    )
    if row is None:
        raise AccountRefused(f"no staff with login {login!r}", "login")
    return StaffAccount(**dict(row))


def _not_self(account: StaffAccount, actor: Actor) -> None:
    """An administrator does not take their own rights away (locked out of their own
    console, with nobody left to undo it); another administrator, or the CLI, can."""
    if actor.kind == "staff" and account.staff_id == actor.actor_id:
        raise AccountRefused("you cannot take your own rights away", "self")


async def _known_municipality(conn: Conn, code: str) -> None:
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM municipalities WHERE code = $1)", code
    ):
        raise AccountRefused(f"no municipality {code} (add it: machiai admin municipality add)")


async def _known_clinic(conn: Conn, clinic: str, municipality: str) -> None:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM clinics WHERE id = $1::uuid AND municipality_code = $2)",
        clinic,
        municipality,
    )
    if not found:
        raise AccountRefused(f"no clinic {clinic} in municipality {municipality}", "clinic")


async def _audit(
    conn: Conn,
    municipality: str,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor: Actor = CLI,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, "
        "before, after) VALUES ($1, $7, $2, $3, $4, $5::jsonb, $6::jsonb)",
        municipality,
        actor.actor_id,
        action,
        target,
        None if before is None else json.dumps(before, ensure_ascii=False),
        None if after is None else json.dumps(after, ensure_ascii=False),
        actor.kind,
    )
