"""As root, the embedded Postgres's binaries and data go where its user can reach them,
without changing a mode above the clone, and its data leaves with its data dir."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from machiai.embedded import EmbeddedPostgres, PostgresTuning, _package_dir
from machiai.embedded_root import (
    Account,
    RootPlacementError,
    _link_or_copy,
    can_search,
    collect_orphans,
    place_pgdata,
    postgres_account,
    reachable_bin_dir,
    relocated_dir,
)
from tests.servers import session_tmpdir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="placement applies to root only")
STRANGER = Account(uid=54_321, gid=54_321)


@pytest.fixture
def public() -> Iterator[Path]:
    """A directory every user may enter (tmp_path's parents are private to its owner)."""
    with session_tmpdir() as path:
        yield path


@pytest.fixture
def account() -> Account:
    found = postgres_account()
    assert found is not None
    return found


def test_search_follows_owner_then_group_then_others(public: Path) -> None:
    inner = public / "a" / "b"
    inner.mkdir(parents=True)
    assert can_search(STRANGER, inner)
    (public / "a").chmod(0o750)
    assert not can_search(STRANGER, inner)
    assert not can_search(STRANGER, public / "a")
    assert can_search(STRANGER, public)


@as_root
def test_search_by_owner_uses_the_owner_bits(public: Path) -> None:
    private = public / "private"
    private.mkdir(mode=0o700)
    os.chown(private, STRANGER.uid, STRANGER.gid)
    assert can_search(STRANGER, private)
    private.chmod(0o077)  # others may, the owner may not: the owner class decides
    assert not can_search(STRANGER, private)


@as_root
def test_binaries_are_linked_once_per_build_and_modes_stay(public: Path, account: Account) -> None:
    base = public / "base"
    package = _package_dir("pgserver")
    venv_postgres = package / "pginstall" / "bin" / "postgres"
    before = venv_postgres.stat()
    bin_dir = reachable_bin_dir(package, account, base)
    assert bin_dir.parents[3] == base
    placed = (bin_dir / "postgres").stat()
    assert (placed.st_ino, placed.st_dev) == (before.st_ino, before.st_dev)
    assert venv_postgres.stat().st_mode == before.st_mode
    assert reachable_bin_dir(package, account, base) == bin_dir
    assert [p.name for p in base.iterdir()] == [bin_dir.parents[2].name]
    # The user runs it, libraries (found through relative paths) included.
    result = subprocess.run(
        [str(bin_dir / "initdb"), "--version"],
        capture_output=True,
        text=True,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(base.stat().st_mode) == 0o755


@as_root
def test_reachable_data_stays_in_place(public: Path, account: Account) -> None:
    data_dir = public / "data" / "postgres"
    pgdata = place_pgdata(data_dir, account, public / "base")
    assert pgdata == data_dir / "pgdata"
    assert data_dir.stat().st_uid == account.uid
    assert not (public / "base").exists()


@as_root
def test_private_data_moves_and_leaves_with_its_data_dir(
    public: Path, tmp_path: Path, account: Account
) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    data_dir = private / "clone" / ".machiai" / "postgres"
    base = public / "base"
    pgdata = place_pgdata(data_dir, account, base)
    home = relocated_dir(data_dir, base)
    assert pgdata == home / "pgdata"
    assert (data_dir / "pgdata").readlink() == pgdata
    assert home.stat().st_uid == account.uid
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # nothing above the clone changed
    assert place_pgdata(data_dir, account, base) == pgdata  # a restart finds it again
    assert collect_orphans(base) == []
    (data_dir / "pgdata").unlink()
    assert collect_orphans(base) == [home]
    assert not home.exists()


@as_root
def test_a_base_anyone_but_root_may_write_is_refused(public: Path, account: Account) -> None:
    """Root runs psql and pg_isready from the base: nobody else may put a binary there."""
    base = public / "base"
    base.mkdir(mode=0o755)
    package = _package_dir("pgserver")
    base.chmod(0o775)
    with pytest.raises(RootPlacementError, match="writable by root only"):
        reachable_bin_dir(package, account, base)
    base.chmod(0o755)
    os.chown(base, STRANGER.uid, STRANGER.gid)
    with pytest.raises(RootPlacementError, match="must belong to root"):
        reachable_bin_dir(package, account, base)
    assert list(base.iterdir()) == []


@as_root
def test_data_elsewhere_is_never_taken_over(public: Path, tmp_path: Path, account: Account) -> None:
    """A link to other data, or data the user cannot reach, stops the start with what to do."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    base = public / "base"
    linked = private / "linked"
    linked.mkdir()
    (linked / "pgdata").symlink_to(public / "someone-elses")
    with pytest.raises(RootPlacementError, match="remove the link"):
        place_pgdata(linked, account, base)
    unreachable = private / "unreachable"
    (unreachable / "pgdata").mkdir(parents=True)
    with pytest.raises(RootPlacementError, match="cannot reach"):
        place_pgdata(unreachable, account, base)
    assert not relocated_dir(linked, base).exists()
    assert not relocated_dir(unreachable, base).exists()


@as_root
def test_postgres_runs_from_a_private_data_dir(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    server = EmbeddedPostgres(private / "postgres", tuning=PostgresTuning(fsync=False))
    try:
        server.start()
        assert "42" in server.psql("machiai", "SELECT 41 + 1").split()
        assert server.pgdata.is_relative_to("/var/lib/machiai")
    finally:
        server.stop()
        (private / "postgres" / "pgdata").unlink(missing_ok=True)
        collect_orphans()
    assert not relocated_dir(private / "postgres").exists()


def test_a_file_others_may_not_read_is_copied_not_linked(public: Path) -> None:
    """A hard link shares the mode: making it readable would change the venv's file."""
    source = public / "private-binary"
    source.write_bytes(b"\x7fELF")
    source.chmod(0o700)
    readable = public / "public-binary"
    readable.write_bytes(b"\x7fELF")
    readable.chmod(0o755)
    _link_or_copy(str(source), str(public / "copy"))
    _link_or_copy(str(readable), str(public / "link"))
    assert stat.S_IMODE(source.stat().st_mode) == 0o700
    assert (public / "copy").stat().st_ino != source.stat().st_ino
    assert stat.S_IMODE((public / "copy").stat().st_mode) == 0o755
    assert (public / "link").stat().st_ino == readable.stat().st_ino
