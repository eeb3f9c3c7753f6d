"""The `machiai` command: run, migrate, seed-demo, loadtest, audit seal/verify, purge, admin,
export."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path

import asyncpg

from booking import export_cli
from machiai import accounts, audit, purge
from machiai.backends import DataDirBusy, open_backends, running_owner
from machiai.config import Mode, SettingsError
from machiai.embedded import EmbeddedServerError
from machiai.migrate import MigrationError, apply_migrations
from machiai.pg import Conn
from machiai.runner import ServiceStartError, check_service_settings, run_system
from machiai.seed_demo import seed_demo
from machiai.settings import RunnerSettings


def _cmd_run(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    if args.workers is not None:
        settings = dataclasses.replace(settings, workers=args.workers)
    return run_system(settings)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 64, got {text!r}")
    return value


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    with open_backends(settings) as backends:
        applied = asyncio.run(apply_migrations(backends.database_url))
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _cmd_seed_demo(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    if settings.mode is Mode.PRODUCTION:
        print("seed-demo refuses to run with MACHIAI_ENV=production", file=sys.stderr)
        return 2

    running = running_owner(settings.data_dir)
    waitroom_url = str(running["waitroom_url"]) if running else settings.waitroom_url

    async def seed(database_url: str) -> None:
        await apply_migrations(database_url)
        conn = await asyncpg.connect(database_url)
        try:
            summary = await seed_demo(conn)
        finally:
            await conn.close()
        print(
            f"Demo data ready: municipality {summary.municipality} (デモ市), "
            f"event {summary.event_id!r}, {summary.clinics} clinics, {summary.slots} slots, "
            f"{summary.residents} residents."
        )
        print(
            f"  Try a resident: voucher {summary.first_voucher}, "
            f"birth date {summary.first_birth_date.isoformat()}"
        )
        print(f"  Waiting room:   {waitroom_url}/events/{summary.event_id}/wait")
        booking_url = str(running.get("booking_url", "")) if running else ""
        print(f"  Staff console:  {booking_url or settings.booking_url}/staff")
        print("  Staff logins (passwords are new on every seed-demo run):")
        for login, password in summary.staff_passwords.items():
            print(f"    {login:<14} {password}")

    with open_backends(settings) as backends:
        asyncio.run(seed(backends.database_url))
    return 0


def _cmd_audit_seal(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    with open_backends(settings) as backends:
        sealed = asyncio.run(audit.seal_database(backends.database_url))
    print(f"sealed {sealed:,} audit rows" if sealed else "no audit row was waiting for a seal")
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    with open_backends(settings) as backends:
        reports = asyncio.run(
            audit.verify_database(backends.database_url, args.municipality, args.max_unsealed_s)
        )
    intact, out, err = audit.describe(reports, args.municipality, args.max_unsealed_s)
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return 0 if intact else 1


def _cmd_purge(args: argparse.Namespace) -> int:
    settings = RunnerSettings.from_env()
    try:
        with open_backends(settings) as backends:
            result = asyncio.run(
                purge.purge_database(
                    backends.database_url, args.before, args.municipality, apply=args.apply
                )
            )
    except purge.PurgeRefused as exc:
        print(f"machiai purge: {exc}", file=sys.stderr)
        return 2
    print(purge.describe(result))
    return 0


def _cmd_remind(args: argparse.Namespace) -> int:
    # Imported here: only this command needs booking's job (the CLI starts fast).
    from booking.services import reminders

    settings = RunnerSettings.from_env()
    day = args.day or reminders.today_jst()
    try:
        with open_backends(settings) as backends:
            done = asyncio.run(
                reminders.remind_database(backends.database_url, day, args.municipality)
            )
    except reminders.UnknownMunicipality as exc:
        print(f"machiai remind: {exc}", file=sys.stderr)
        return 2
    for r in done:
        print(reminders.describe(r))
    return 0


def _cmd_deliver(args: argparse.Namespace) -> int:
    # Imported here: only this command runs booking's delivery worker.
    from booking.delivery.process import run_worker
    from booking.delivery.settings import DeliverySettings

    settings = RunnerSettings.from_env()
    delivery = DeliverySettings.from_env()
    if settings.database_url is not None:  # the worker needs no Redis: none is started
        return run_worker(settings.database_url, delivery)
    with open_backends(settings) as backends:
        return run_worker(backends.database_url, delivery)


def _admin(work: Callable[[Conn], Awaitable[str]]) -> int:
    """``work`` on the database (DATABASE_URL, else the embedded one), printing what it says;
    a refusal is one line on stderr and exit 2."""
    settings = RunnerSettings.from_env()
    try:
        with open_backends(settings) as backends:
            out = asyncio.run(accounts.on_database(backends.database_url, work))
    except accounts.AccountRefused as exc:
        print(f"machiai admin: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password (one line of stdin with --password-stdin, else generated), and
    whether it was generated (then it is printed, once)."""
    if not args.password_stdin:
        return accounts.new_password(), True
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    return accounts.check_password(line), False


def _admin_with_password(
    args: argparse.Namespace, work: Callable[[Conn, str], Awaitable[str]]
) -> int:
    """``_admin`` of a change that sets a password, read (or generated) first: a password
    refused is refused before any database is opened. A generated one is printed once."""
    try:
        password, generated = _password(args)
    except accounts.AccountRefused as exc:
        print(f"machiai admin: {exc}", file=sys.stderr)
        return 2

    async def with_password(conn: Conn) -> str:
        said = await work(conn, password)
        return said + (f"\npassword (shown only now): {password}" if generated else "")

    return _admin(with_password)


def _cmd_admin_municipality_add(args: argparse.Namespace) -> int:
    return _admin(
        lambda conn: accounts.add_municipality(conn, args.code, args.name_ja, args.name_en)
    )


def _cmd_admin_staff_add(args: argparse.Namespace) -> int:
    async def work(conn: Conn, password: str) -> str:
        account = await accounts.add_staff(
            conn, args.login, args.municipality, args.role, args.clinic, password, args.display_name
        )
        return f"added staff {account.describe()}"

    return _admin_with_password(args, work)


def _cmd_admin_staff_deactivate(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> str:
        account, changed = await accounts.deactivate_staff(conn, args.login)
        if not changed:
            return f"staff {args.login} was inactive already"
        return f"deactivated staff {account.describe()}; {accounts.SIGNED_OUT}"

    return _admin(work)


def _cmd_admin_staff_role(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> str:
        before, after = await accounts.change_role(conn, args.login, args.role, args.clinic)
        if before == after:
            return f"staff {before.describe()} unchanged"
        return f"staff {before.describe()} is now {after.role}; {accounts.SIGNED_OUT}"

    return _admin(work)


def _cmd_admin_staff_reset_password(args: argparse.Namespace) -> int:
    async def work(conn: Conn, password: str) -> str:
        account = await accounts.reset_password(conn, args.login, password)
        return f"new password for staff {account.describe()}; {accounts.SIGNED_OUT}"

    return _admin_with_password(args, work)


def _cmd_admin_staff_list(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> str:
        return accounts.describe_list(await accounts.list_staff(conn, args.municipality))

    return _admin(work)


def _cmd_loadtest(args: argparse.Namespace) -> int:
    # Imported here: locust and matplotlib come with the `loadtest` extra only.
    from loadtests.harness import Deployment, HarnessError, Workers, run_loadtest
    from loadtests.profiles import PROFILES, ProfileError, with_overrides

    deployment = None
    if not args.target:
        # The local system starts only after a dataset is seeded: check first what its
        # services will read (the harness sets the mode, the ports and the backend URLs).
        harness_sets = {"REDIS_URL", "DATABASE_URL", "WAITROOM_PORT", "BOOKING_PORT"}
        harness_sets |= {"WAITROOM_TRUSTED_PROXIES", "BOOKING_TRUSTED_PROXIES"}
        environ = {k: v for k, v in os.environ.items() if k not in harness_sets}
        check_service_settings({**environ, "MACHIAI_ENV": "development"})
    else:
        database_url = args.database_url or os.environ.get("DATABASE_URL")
        if not args.booking_url or not database_url:
            print(
                "machiai loadtest: --target needs --booking-url and --database-url "
                "(or DATABASE_URL) of the same deployment",
                file=sys.stderr,
            )
            return 2
        deployment = Deployment(args.target.rstrip("/"), args.booking_url.rstrip("/"), database_url)
    try:
        profile = with_overrides(PROFILES[args.profile], args.set or [])
        return run_loadtest(
            profile,
            Path(args.report_dir),
            workers=Workers(args.locust_processes, args.external_workers, args.master_port),
            deployment=deployment,
        )
    except (ProfileError, HarnessError) as exc:
        print(f"machiai loadtest: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="machiai",
        description="machiai (待合): reservation system with a virtual waiting room. "
        "Configuration comes from environment variables; see README.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run waitroom + booking (embedded Redis/Postgres unless URLs are set)",
        description="Run both services. Without REDIS_URL / DATABASE_URL, private Redis and "
        "Postgres servers are started with their data in MACHIAI_DATA_DIR (default ./.machiai) "
        "and stopped on exit.",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="uvicorn worker processes per service (default MACHIAI_WORKERS, else 1); "
        "the metrics of all of them in one scrape",
    )
    run.set_defaults(func=_cmd_run)
    sub.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply pending schema migrations (safe to repeat and to run concurrently).",
    ).set_defaults(func=_cmd_migrate)
    sub.add_parser(
        "seed-demo",
        help="create demo municipality, event, clinics, slots and residents",
        description="Create demo data (idempotent) and print how to try it. Development only.",
    ).set_defaults(func=_cmd_seed_demo)
    audit_cmd = sub.add_parser(
        "audit",
        help="seal and check the audit log",
        description="The audit log is one hash chain per municipality, made of seals "
        "(migration 0006).",
    )
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_sub.add_parser(
        "seal",
        help="link the audit rows written since the last seal into their chains",
        description="Seal the committed audit rows that have no seal yet, batch after batch "
        "until a batch is not full (another process sealing meanwhile is fine: one seals at a "
        "time). The booking service does this every second; a deployment without booking "
        "runs this from cron, every minute or more often.",
    ).set_defaults(func=_cmd_audit_seal)
    verify = audit_sub.add_parser(
        "verify",
        help="recompute every seal's hash and name the first edited, deleted or inserted row "
        "of each chain, and rows left unsealed too long",
        description="Walk each chain's seals in order, recompute every hash (in Python, from "
        "the row values) and name the first row of each chain that was edited, deleted or "
        "inserted, and rows without a seal older than --max-unsealed-s (exit 1); exit 0 with "
        "the counts and each chain's head when intact. Keep the printed heads elsewhere: a "
        "chain rewritten to its end together with its head is caught only against them.",
    )
    verify.add_argument("--municipality", metavar="CODE", help="only this municipality's chain")
    verify.add_argument(
        "--max-unsealed-s",
        type=float,
        default=audit.MAX_UNSEALED_S,
        metavar="SECONDS",
        help="a row written longer ago without a seal is an error (default: %(default)g; the "
        "sealer runs every second)",
    )
    verify.set_defaults(func=_cmd_audit_verify)
    purge_cmd = sub.add_parser(
        "purge",
        help="remove residents' personal data of events finished before a date (dry run "
        "unless --apply)",
        description="Of events that closed, and whose slots all ended, before DATE (00:00 "
        "Japan time): drop the voucher numbers of their bookings, the registry rows of their "
        "residents, their used passes, and idempotency records older than DATE. Residents "
        "with a booking in an event not finished are kept whole; counts (slots, bookings "
        "with status, date, clinic) and the audit log stay. Prints counts; changes nothing "
        "without --apply; an applied purge is audited (admin.data.purged).",
    )
    purge_cmd.add_argument(
        "--before", required=True, type=date.fromisoformat, metavar="DATE", help="YYYY-MM-DD"
    )
    purge_cmd.add_argument("--municipality", metavar="CODE", help="only this municipality")
    purge_cmd.add_argument("--apply", action="store_true", help="purge (default: count only)")
    purge_cmd.set_defaults(func=_cmd_purge)
    remind_cmd = sub.add_parser(
        "remind",
        help="write the day-before reminders (booking.reminder.due) to the outbox",
        description="For each municipality (or --municipality), one outbox row per confirmed "
        "booking whose appointment is on the day after DAY (Japan time), for the delivery "
        "worker to send. Safe to run twice: a municipality's day is written once (booking "
        "does this by itself every day after BOOKING_REMINDER_AT).",
    )
    remind_cmd.add_argument(
        "--day", type=date.fromisoformat, metavar="DATE", help="YYYY-MM-DD (default: today)"
    )
    remind_cmd.add_argument("--municipality", metavar="CODE", help="only this municipality")
    remind_cmd.set_defaults(func=_cmd_remind)
    sub.add_parser(
        "deliver",
        help="run a delivery worker: send the outbox (log, e-mail, webhook) until Ctrl-C",
        description="Fan new outbox rows out into deliveries per the municipality's channels "
        "and send them, at least once, retrying with backoff until MACHIAI_DELIVERY_MAX_ATTEMPTS "
        "(then dead, listed in the admin console). Any number may run at once. Ctrl-C or "
        "SIGTERM finishes the batch in flight, then exits. `machiai run` starts one.",
    ).set_defaults(func=_cmd_deliver)
    _admin_parser(sub)
    export_cli.add_parser(sub)  # machiai export ledger | day-list
    from loadtests.profiles import PROFILES

    loadtest = sub.add_parser(
        "loadtest",
        help="run a judged load-test profile against a local system",
        description="Start the system locally (embedded Redis/Postgres), seed a dataset sized "
        "for the profile, surge it with locust (headless, bounded), then judge it: oversold "
        "slots, double bookings, admission-order inversions, lost bookings and 5xx must all "
        "be 0. Writes a report folder; exits 1 when an invariant fails. Profiles: "
        + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()),
    )
    loadtest.add_argument("profile", choices=sorted(PROFILES))
    loadtest.add_argument("--report-dir", default="reports", help="where report folders go")
    loadtest.add_argument(
        "--locust-processes",
        type=int,
        default=1,
        help="locust worker processes (each needs about a core)",
    )
    loadtest.add_argument(
        "--external-workers",
        type=int,
        default=0,
        metavar="N",
        help="run locust as a master and wait for N workers on other machines "
        "(the command to start them is printed; their residents' records come back to the master)",
    )
    loadtest.add_argument(
        "--master-port", type=int, default=5557, help="with --external-workers: the master's port"
    )
    loadtest.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="change the profile's size or rates, e.g. --set residents=3000 "
        "--set spawn_per_s=60 (repeatable)",
    )
    loadtest.add_argument(
        "--target",
        metavar="WAITROOM_URL",
        help="load a running deployment instead of starting one (needs --booking-url and "
        "--database-url; the run seeds its own event, clinics, registry block and staff there, "
        "in municipality 990001, and deletes nothing). The deployment must list the load "
        "generator's address (and any proxy in between) in WAITROOM_TRUSTED_PROXIES and "
        "BOOKING_TRUSTED_PROXIES so each simulated resident counts as its own client",
    )
    loadtest.add_argument("--booking-url", help="with --target: the booking service's URL")
    loadtest.add_argument(
        "--database-url", help="with --target: the deployment's Postgres (default DATABASE_URL)"
    )
    loadtest.set_defaults(func=_cmd_loadtest)
    return parser


def _admin_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser(
        "admin",
        help="add municipalities; add, deactivate, re-role and list staff accounts",
        description="Municipalities and staff accounts, on DATABASE_URL (else the embedded "
        "Postgres). Every change is audited (admin.municipality.*, admin.staff.*). "
        "Deactivating, a role change and a new password sign the person out everywhere "
        "(within 2 s). A refusal is one line on stderr and exit 2; nothing changed then.",
    )
    groups = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    municipality = groups.add_parser("municipality", help="municipalities (tenants)")
    m_sub = municipality.add_subparsers(dest="municipality_command", required=True)
    m_add = m_sub.add_parser("add", help="add a municipality")
    m_add.add_argument("code", metavar="CODE", help="全国地方公共団体コード, 6 digits")
    m_add.add_argument("--name-ja", required=True, help="name in Japanese")
    m_add.add_argument("--name-en", required=True, help="name in English")
    m_add.set_defaults(func=_cmd_admin_municipality_add)

    staff = groups.add_parser("staff", help="staff accounts (admin, operator, clinic)")
    s_sub = staff.add_subparsers(dest="staff_command", required=True, metavar="COMMAND")
    roles = "{admin,operator,clinic}"
    stdin_help = (
        f"read the password from the first line of stdin (at least "
        f"{accounts.MIN_PASSWORD_CHARS} characters) instead of generating one"
    )
    add = s_sub.add_parser(
        "add",
        help="add a staff account; prints a generated password once",
        description="Add a staff account. Clinic staff name their clinic (of the same "
        "municipality); admins and operators name none. The password is generated and "
        "printed once, unless --password-stdin.",
    )
    add.add_argument("login", metavar="LOGIN", help="3-64 of a-z 0-9 . _ -")
    add.add_argument("--municipality", required=True, metavar="CODE")
    add.add_argument("--role", required=True, metavar=roles)
    add.add_argument("--clinic", metavar="CLINIC_UUID", help="with --role clinic only")
    add.add_argument("--display-name", metavar="NAME", help="shown to colleagues (default LOGIN)")
    add.add_argument("--password-stdin", action="store_true", help=stdin_help)
    add.set_defaults(func=_cmd_admin_staff_add)
    deactivate = s_sub.add_parser(
        "deactivate", help="deactivate an account and sign it out everywhere"
    )
    deactivate.add_argument("login", metavar="LOGIN")
    deactivate.set_defaults(func=_cmd_admin_staff_deactivate)
    role = s_sub.add_parser(
        "role", help="change an account's role (and clinic); signs it out everywhere"
    )
    role.add_argument("login", metavar="LOGIN")
    role.add_argument("role", metavar=roles)
    role.add_argument("--clinic", metavar="CLINIC_UUID", help="with role clinic only")
    role.set_defaults(func=_cmd_admin_staff_role)
    reset = s_sub.add_parser(
        "reset-password",
        help="set a new password (printed once, unless --password-stdin); signs the account "
        "out everywhere",
    )
    reset.add_argument("login", metavar="LOGIN")
    reset.add_argument("--password-stdin", action="store_true", help=stdin_help)
    reset.set_defaults(func=_cmd_admin_staff_reset_password)
    listing = s_sub.add_parser("list", help="list staff accounts (never their passwords)")
    listing.add_argument("--municipality", metavar="CODE", help="only this municipality")
    listing.set_defaults(func=_cmd_admin_staff_list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        # One line, no traceback: the message names the variable and the rule (never a secret).
        print(f"machiai: configuration error: {exc}", file=sys.stderr)
        return 2
    except (DataDirBusy, EmbeddedServerError, MigrationError, ServiceStartError) as exc:
        print(f"machiai: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
