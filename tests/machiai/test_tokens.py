"""The token module owns every payload layout: sessions and staff tokens round-trip, keep
their purpose, and an admission pass signed again at its issue time is the same token."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machiai.tokens import AdmissionPass, SessionClaims, StaffClaims, TokenError, Tokens

KEY = "k" * 40
TOKENS = Tokens([KEY])
ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)


@given(
    ids,
    ids,
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    st.from_regex(r"[0-9]{10}", fullmatch=True),
)
def test_session_round_trip(session_id: str, event_id: str, muni: str, voucher: str) -> None:
    token = TOKENS.dump_session(SessionClaims(session_id, event_id, muni, voucher))
    claims = TOKENS.load_session(token, 60)
    assert (claims.session_id, claims.event_id, claims.municipality_code, claims.voucher) == (
        session_id,
        event_id,
        muni,
        voucher,
    )
    assert claims.issued_at_s > 0


def test_staff_round_trip_and_purposes_do_not_mix() -> None:
    staff = TOKENS.dump_staff(StaffClaims("s1", "131001", "clinic", "c1"))
    claims = TOKENS.load_staff(staff, 60)
    assert (claims.staff_id, claims.role, claims.clinic_id) == ("s1", "clinic", "c1")
    assert (
        TOKENS.load_staff(
            TOKENS.dump_staff(StaffClaims("s2", "131001", "admin", None)), 60
        ).clinic_id
        is None
    )
    session = TOKENS.dump_session(SessionClaims("a", "b", "131001", "0000000001"))
    # A token of one purpose grants nothing as another.
    with pytest.raises(TokenError):
        TOKENS.load_staff(session, 60)
    with pytest.raises(TokenError):
        TOKENS.load_session(staff, 60)
    with pytest.raises(TokenError):
        TOKENS.load_pass(session, 60)


def test_a_pass_signed_again_at_its_issue_time_is_the_same_token() -> None:
    first = AdmissionPass("ev", "t" * 32, "p" * 32, issued_at_s=1_900_000_000)
    token = TOKENS.dump_pass(first)
    assert TOKENS.dump_pass(first) == token
    assert Tokens(["other" * 10]).dump_pass(first) != token


def test_a_pass_signed_again_lives_from_its_issue_time() -> None:
    """Handing out the same pass again does not lengthen its life."""
    issued = int(time.time()) - 100
    token = TOKENS.dump_pass(AdmissionPass("ev", "t" * 32, "p" * 32, issued_at_s=issued))
    assert TOKENS.load_pass(token, 300).issued_at_s == issued
    with pytest.raises(TokenError) as expired:
        TOKENS.load_pass(token, 60)
    assert expired.value.code == "token_expired"


def test_a_session_keeps_how_it_was_opened_and_whom_it_books_for() -> None:
    started = int(time.time()) - 5
    claims = SessionClaims(
        "s", "ev", "131001", "0000000001", admitted=False, started_s=started, members=("2", "3")
    )
    loaded = TOKENS.load_session(TOKENS.dump_session(claims), 60)
    assert (loaded.admitted, loaded.started_s, loaded.members) == (False, started, ("2", "3"))


def test_a_session_signed_again_still_ends_with_its_start() -> None:
    """A new token for the same session (a member added) keeps the session's start."""
    token = TOKENS.dump_session(
        SessionClaims("s", "ev", "131001", "0000000001", started_s=int(time.time()) - 100)
    )
    assert TOKENS.load_session(token, 200).started_s > 0
    with pytest.raises(TokenError) as expired:
        TOKENS.load_session(token, 60)  # the token itself is fresh
    assert expired.value.code == "token_expired"


@pytest.mark.parametrize(
    "claims",
    [
        # started after it was signed: no session of ours
        SessionClaims("s", "ev", "131001", "0000000001", started_s=int(time.time()) + 3600),
        SessionClaims("s", "ev", "131001", "0000000001", members=tuple("123456789")),
        SessionClaims("s", "ev", "131001", "0000000001", members=("",)),
    ],
)
def test_a_malformed_session_grants_nothing(claims: SessionClaims) -> None:
    with pytest.raises(TokenError) as refused:
        TOKENS.load_session(TOKENS.dump_session(claims), 60)
    assert refused.value.code == "token_invalid"
