"""Whatever a client sends as a token — random text, random bytes read as text, a real
token cut, grown or with a character changed — loading it raises TokenError and nothing
else (the services turn that one error into a 401/403)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machiai.tokens import AdmissionPass, SessionClaims, StaffClaims, Ticket, TokenError, Tokens

TOKENS = Tokens(["k" * 40, "o" * 40])
GOOD = {
    "ticket": TOKENS.dump_ticket(Ticket("ev-1", 7, "t" * 32, False)),
    "pass": TOKENS.dump_pass(AdmissionPass("ev-1", "t" * 32, "p" * 32)),
    "session": TOKENS.dump_session(SessionClaims("s" * 32, "ev-1", "131001", "0000000001")),
    "staff": TOKENS.dump_staff(StaffClaims("s1", "131001", "admin", None)),
}
LOADERS: dict[str, Callable[[str], object]] = {
    "ticket": lambda t: TOKENS.load_ticket(t, 86_400, "ev-1"),
    "pass": lambda t: TOKENS.load_pass(t, 86_400, "ev-1"),
    "session": lambda t: TOKENS.load_session(t, 86_400),
    "staff": lambda t: TOKENS.load_staff(t, 86_400),
}
garbage = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    # Shaped like a token: base64 parts joined by dots.
    st.lists(st.binary(max_size=60), min_size=1, max_size=4).map(
        lambda parts: ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)
    ),
    # A compressed payload marker in front (itsdangerous' ".").
    st.binary(max_size=80).map(lambda b: "." + base64.urlsafe_b64encode(b).decode()),
)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@given(raw=garbage)
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_the_token_error(kind: str, raw: str) -> None:
    with pytest.raises(TokenError):
        LOADERS[kind](raw)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(0, 400), tail=st.text())
@settings(max_examples=200, deadline=None)
def test_a_damaged_token_raises_only_the_token_error(
    kind: str, cut: int, flip: int, tail: str
) -> None:
    token = GOOD[kind]
    i = flip % len(token)
    damaged = (
        token[:cut] if cut < len(token) else token + tail,
        token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :],
    )
    for raw in damaged:
        if raw == token:
            continue
        try:
            LOADERS[kind](raw)
        except TokenError:
            pass


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_each_token_loads_only_as_its_own_kind(kind: str) -> None:
    LOADERS[kind](GOOD[kind])
    for other, load in LOADERS.items():
        if other != kind:
            with pytest.raises(TokenError):
                load(GOOD[kind])
