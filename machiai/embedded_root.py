"""The embedded Postgres as root: its own user, and binaries and data that user can reach.

Postgres refuses to run as root, so as root it runs as the system user ``machiai``.
That user must execute the binaries in the virtualenv and enter the data dir, and a
clone in a private directory (root's home is mode 700) gives it neither. Rather
than loosen the modes of someone's home directory, the binaries are hard-linked
(copied across file systems) into a root-owned base, once per pgserver build, and a
data dir that user cannot reach is kept in that base too, with a symlink from where
it would have been (``<data dir>/pgdata``), so the data still belongs to the data dir:
once that link is gone (the clone or ``.machiai`` deleted), the next start removes it.

Root runs ``psql`` and ``pg_isready`` from the base as well, so the base and the
binaries in it belong to root and only root may write there; only the data dirs
belong to ``machiai``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_SYSTEM_USER = "machiai"
ROOT_BASE = Path("/var/lib/machiai")
_SOURCE_FILE = "source"
_TMP_MAX_AGE_S = 24 * 3600
_SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)


class RootPlacementError(RuntimeError):
    """The embedded Postgres cannot be made to run as root here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Account:
    uid: int
    gid: int


def postgres_account() -> Account | None:
    """The account Postgres runs as: ours unless we are root, else ``machiai``, created once."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        try:
            subprocess.run([*argv, PG_SYSTEM_USER], check=True, capture_output=True)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except (OSError, subprocess.CalledProcessError, KeyError) as exc:
            raise RootPlacementError(
                f"Postgres refuses to run as root and the system user {PG_SYSTEM_USER!r} "
                f"could not be created ({exc}); create it (useradd --system {PG_SYSTEM_USER}), "
                "run machiai as a normal user, or set DATABASE_URL"
            ) from None
    return Account(entry.pw_uid, entry.pw_gid)


def can_search(account: Account, path: Path) -> bool:
    """Whether ``account`` may enter ``path`` and every directory above it (mode bits only)."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        # The first class that matches decides, as in the kernel: owner, then group, then others.
        if st.st_uid == account.uid:
            bit = _SEARCH[0]
        elif st.st_gid == account.gid:
            bit = _SEARCH[1]
        else:
            bit = _SEARCH[2]
        if not st.st_mode & bit:
            return False
    return True


def _prepare_base(base: Path, account: Account) -> None:
    try:
        base.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = base.stat()
        if st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o755 != 0o755:
            base.chmod(stat.S_IMODE(st.st_mode) | 0o755)  # made under a strict umask
    except OSError as exc:
        raise RootPlacementError(
            f"the embedded Postgres (run as user {PG_SYSTEM_USER!r} because we are root) needs "
            f"{base} for its binaries and data, which could not be created ({exc.strerror}); "
            "run machiai as a normal user or set DATABASE_URL"
        ) from None
    # Root executes psql and pg_isready from here: nobody else may write.
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise RootPlacementError(
            f"{base} must belong to root and be writable by root only (chown root {base}; "
            f"chmod 755 {base}); it holds binaries that root runs"
        )
    if not can_search(account, base):
        raise RootPlacementError(
            f"user {PG_SYSTEM_USER!r} cannot enter {base} (a directory above it is private); "
            "run machiai as a normal user or set DATABASE_URL"
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build_digest(site: Path, parts: list[Path]) -> str:
    """Identifies one pgserver build: its file list with sizes, and the server binary itself."""
    h = hashlib.sha256()
    for part in parts:
        for root, dirs, files in os.walk(part):
            dirs.sort()
            for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, site)
                target = os.readlink(path) if os.path.islink(path) else str(os.lstat(path).st_size)
                h.update(f"{rel}\0{target}\n".encode())
    with open(parts[0] / "bin" / "postgres", "rb") as binary:
        for chunk in iter(lambda: binary.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _link_or_copy(src: str, dst: str) -> None:
    st = os.stat(src)
    # A hard link shares the file's mode: use one only when the file is readable (and, if
    # executable, executable) by others already, so no mode in the virtualenv changes.
    readable = st.st_mode & stat.S_IROTH and (
        not st.st_mode & stat.S_IXUSR or st.st_mode & stat.S_IXOTH
    )
    if readable:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system, or links refused: copy instead
    shutil.copy2(src, dst)
    mode = stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if st.st_mode & stat.S_IXUSR:
        mode |= stat.S_IXGRP | stat.S_IXOTH
    os.chmod(dst, mode & ~0o022)


def reachable_bin_dir(package_dir: Path, account: Account, base: Path = ROOT_BASE) -> Path:
    """pgserver's ``pginstall/bin``, placed under ``base`` where any user may run it.

    The binaries find their libraries by relative paths into site-packages
    (``$ORIGIN/../../../pgserver.libs``), so the layout below site-packages is kept.
    """
    site = package_dir.parent
    parts = [package_dir / "pginstall"]
    if (site / "pgserver.libs").is_dir():
        parts.append(site / "pgserver.libs")
    _prepare_base(base, account)
    target = base / f"pgserver-{_build_digest(site, parts)}"
    bin_dir = target / "pgserver" / "pginstall" / "bin"
    if target.is_dir():  # complete: it appears in one rename
        return bin_dir
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    try:
        for part in parts:
            shutil.copytree(
                part, tmp / part.relative_to(site), symlinks=True, copy_function=_link_or_copy
            )
        for root, _, _ in os.walk(tmp):  # new directories only: no mode in the venv changes
            os.chmod(root, 0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent start that got there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return bin_dir


def _chown_tree(path: Path, account: Account) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), account.uid, account.gid)


def relocated_dir(data_dir: Path, base: Path = ROOT_BASE) -> Path:
    """Where the Postgres data of ``data_dir`` goes when its user cannot reach ``data_dir``."""
    return base / f"data-{_digest(str(data_dir))}"


def place_pgdata(data_dir: Path, account: Account, base: Path = ROOT_BASE) -> Path:
    """The ``pgdata`` directory for ``data_dir``, owned by and reachable for ``account``.

    In place (``data_dir/pgdata``) when ``account`` can reach ``data_dir``; otherwise
    under ``base``, with ``data_dir/pgdata`` a symlink to it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / "pgdata"
    if not link.is_symlink() and can_search(account, data_dir.parent):
        _chown_tree(data_dir, account)
        return link
    if link.exists() and not link.is_symlink():
        raise RootPlacementError(
            f"{link} holds Postgres data that user {PG_SYSTEM_USER!r} cannot reach (a directory "
            f"above it is private); move it to a directory every user may enter, or set "
            "DATABASE_URL"
        )
    _prepare_base(base, account)
    collect_orphans(base)
    home = relocated_dir(data_dir, base)
    pgdata = home / "pgdata"
    if not link.is_symlink():
        # Link first: from the moment the relocated dir exists it has its owner.
        link.symlink_to(pgdata)
    elif Path(os.readlink(link)) != pgdata:
        raise RootPlacementError(
            f"{link} points to {os.readlink(link)}, not to {pgdata}; remove the link to start "
            "with an empty database there"
        )
    if not home.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
        (tmp / _SOURCE_FILE).write_text(str(data_dir) + "\n", "utf-8")
        _chown_tree(tmp, account)
        os.chmod(tmp, 0o700)
        tmp.rename(home)
    return pgdata


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, and not ours
    return True


def collect_orphans(base: Path = ROOT_BASE) -> list[Path]:
    """Remove relocated data whose data dir no longer links to it; returns what was removed.

    A data dir deleted with ``rm -rf`` takes its Postgres data along, as it would
    without root; a server still running on it is left alone.
    """
    removed = []
    for tmp in base.glob(".tmp-*"):  # left by a start that was killed half-way
        try:
            stale = time.time() - tmp.lstat().st_mtime > _TMP_MAX_AGE_S
        except OSError:
            continue  # renamed into place meanwhile
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
    for home in sorted(base.glob("data-*")):
        try:
            source = Path((home / _SOURCE_FILE).read_text("utf-8").strip())
        except OSError:
            continue
        link = source / "pgdata"
        linked = link.is_symlink() and Path(os.readlink(link)) == home / "pgdata"
        if linked or _postmaster_alive(home / "pgdata"):
            continue
        shutil.rmtree(home, ignore_errors=True)
        removed.append(home)
    return removed
