"""Every text a page or a message shows has its Japanese, and the catalog holds no stale ones."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import DictLoader

from machiai import i18n

ROOT = Path(__file__).resolve().parents[2]
# Python: i18n.tr(lang, message), tr_n(lang, one, many, n), N_(message); templates: _() etc.
KEYWORDS = {"tr": (2,), "tr_n": (2, 3), "N_": None, "_": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def used_messages() -> dict[str, str]:
    """msgid -> where it is used first, from the code and templates of all three packages."""
    found: dict[str, str] = {}
    for package in ("machiai", "waitroom", "booking"):
        for filename, _line, message, _comments, _context in extract_from_dir(
            str(ROOT / package), METHODS, keywords=KEYWORDS, comment_tags=()
        ):
            ids = message if isinstance(message, tuple) else (message,)
            for msgid in ids:
                if msgid:
                    found.setdefault(msgid, f"{package}/{filename}")
    return found


def japanese() -> dict[str, str]:
    files = i18n.catalog_files("ja")
    assert [f.name for f in files][:1] == ["machiai.po"], files
    out: dict[str, str] = {}
    where: dict[str, str] = {}
    for source in files:
        with source.open("rb") as po:
            catalog = read_po(po, locale="ja")
        for message in catalog:
            if not message.id:
                continue
            assert not message.fuzzy, f"fuzzy translation: {message.id!r}"
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            for msgid in ids:
                # One text, one place: the same text in two files could say two things.
                assert msgid not in where, f"{msgid!r} in {where.get(str(msgid))} and {source.name}"
                where[str(msgid)] = source.name
                out[str(msgid)] = str(strings[0] or "")
    return out


def test_every_text_in_use_has_its_japanese_and_none_is_stale() -> None:
    used = used_messages()
    ja = japanese()
    assert used, "the extractor found no texts: the check would pass for nothing"
    missing = {m: where for m, where in used.items() if not ja.get(m)}
    assert missing == {}
    stale = sorted(set(ja) - set(used))
    assert stale == []


def test_translation_escapes_the_values_it_fills_in() -> None:
    env = i18n.environment(
        DictLoader({"t.html": '<p>{{ _("Vaccination booking") }} {{ name }}</p>'})
    )
    html = i18n.render(env, "t.html", "ja", {"name": "<script>"})
    assert html == "<p>ワクチン接種の予約 &lt;script&gt;</p>"
    assert i18n.render(env, "t.html", "en", {"name": "x"}) == "<p>Vaccination booking x</p>"


def test_language_choice() -> None:
    assert i18n.choose(None, "") == "ja"
    assert i18n.choose("en", "ja") == "en"
    assert i18n.choose(None, "en-US,en;q=0.9,ja;q=0.8") == "en"
    assert i18n.choose(None, "fr, ja;q=0.5, en;q=0.4") == "ja"
    assert i18n.choose("xx", "en") == "en"
