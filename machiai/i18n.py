"""Texts people read, from gettext catalogs shared by both services (Babel).

Message ids are English; ``machiai/locale/ja/LC_MESSAGES/*.po`` (``machiai.po`` for the
residents' pages and messages, ``staff.po`` for the staff consoles) say each in Japanese,
the language every page starts in. The ``.po`` files are the source (no compile step at
install): they are read once per process and turned into gettext catalogs in memory.
``tests/machiai/test_i18n.py`` fails when a text used in code or a template has no
Japanese, so nobody reads an English sentence on a Japanese page by accident.

Pages choose the language from ``?lang=`` (a visible switch on every page), then the
browser's Accept-Language, then Japanese.
"""

from __future__ import annotations

import ast
import functools
import io
import re
from collections.abc import Callable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import BaseLoader, Environment
from markupsafe import Markup

LANGUAGES = ("ja", "en")
DEFAULT = "ja"
DOMAIN = "machiai"


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The catalog of ``lang``: Japanese from its .po file; English is the message ids."""
    if lang == "en":
        return NullTranslations()
    catalog = Catalog(locale=lang, domain=DOMAIN)
    for part in catalog_files(lang):
        with part.open("rb") as po:
            for message in read_po(po, locale=lang, domain=DOMAIN):
                if message.id:
                    catalog[message.id] = message
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def catalog_files(lang: str) -> list[Traversable]:
    """The ``.po`` files of ``lang``, one per audience (``machiai.po`` for residents,
    ``staff.po`` for the consoles), read as one catalog."""
    folder = resources.files("machiai").joinpath("locale", lang, "LC_MESSAGES")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".po")), key=lambda f: f.name)


def N_(message: str) -> str:
    """Marks a text for the catalog where it is defined; translated where it is shown."""
    return message


def tr(lang: str, message: str, **values: Any) -> str:
    """``message`` in ``lang``, with ``%(name)s`` placeholders filled from ``values``."""
    text = translations(lang).gettext(message)
    return text % values if values else text


def choose(query_lang: str | None, accept_language: str) -> str:
    """?lang= first (the page's switch), then Accept-Language (ja or en), then Japanese."""
    if query_lang in LANGUAGES:
        return query_lang
    best_lang, best_q = DEFAULT, 0.0
    for part in accept_language.split(","):
        pieces = part.strip().split(";")
        primary = pieces[0].strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        for param in pieces[1:]:
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best_lang, best_q = primary, q
    return best_lang


# ``{{ _("a text without values") }}`` in a template: translated once, when the template
# is loaded for a language, instead of on every render.
_STATIC = re.compile(r"""\{\{\s*_\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\)\s*\}\}""")


class _Translating(BaseLoader):
    """Loads templates with their texts without values already in ``lang``: a page shows
    dozens of labels, and translating each on each render was most of rendering's cost."""

    def __init__(self, base: BaseLoader, lang: str) -> None:
        self.base = base
        self.lang = lang

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self.base.get_source(environment, template)
        catalog = translations(self.lang)

        def translated(match: re.Match[str]) -> str:
            text = Markup(catalog.gettext(ast.literal_eval(match.group(1)))) % {}
            return "{% raw %}" + str(text) + "{% endraw %}"

        return _STATIC.sub(translated, source), filename, uptodate


class _Policies(dict[str, Any]):
    """Jinja policies set once for every language's environment."""

    def __init__(self, envs: Mapping[str, Environment]) -> None:
        super().__init__()
        self.envs = envs

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        for env in self.envs.values():
            env.policies[key] = value


class Templates:
    """One Jinja2 environment per language (autoescape, the i18n extension), each loading
    templates with their fixed texts translated; texts with values are translated per
    render (:func:`render`)."""

    def __init__(self, loader: BaseLoader) -> None:
        self.envs: dict[str, Environment] = {}
        self.policies = _Policies(self.envs)
        for lang in LANGUAGES:
            env = Environment(
                loader=_Translating(loader, lang),
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
            # Bound as globals, not passed per render: macros imported without context
            # (cached by Jinja) see them too.
            gettext_, ngettext_ = _newstyle(lang)
            env.globals.update(lang=lang, _=gettext_, gettext=gettext_, ngettext=ngettext_)
            self.envs[lang] = env


def tr_n(lang: str, singular: str, plural: str, n: int, **values: Any) -> str:
    """The singular or plural text for ``n`` in ``lang`` (``%(num)s`` is ``n``)."""
    return translations(lang).ngettext(singular, plural, n) % {"num": n, **values}


def environment(loader: BaseLoader) -> Templates:
    return Templates(loader)


@functools.cache
def _newstyle(lang: str) -> tuple[Callable[..., Markup], Callable[..., Markup]]:
    """gettext and ngettext as Jinja's newstyle i18n calls them: the catalog's text is
    trusted markup, the values put into it are escaped (Markup's %), and every text is a
    format string (a literal percent sign is written %%). A text without values is
    worked out once per language (pages show the same labels on every request)."""
    catalog = translations(lang)
    plain: dict[str, Markup] = {}

    def gettext_(message: str, **values: Any) -> Markup:
        if not values:
            found = plain.get(message)
            if found is None:
                found = plain[message] = Markup(catalog.gettext(message)) % {}
            return found
        return Markup(catalog.gettext(message)) % values

    def ngettext_(singular: str, plural: str, n: int, **values: Any) -> Markup:
        return Markup(catalog.ngettext(singular, plural, n)) % {"num": n, **values}

    return gettext_, ngettext_


def render(templates: Templates, name: str, lang: str, context: Mapping[str, Any]) -> str:
    """Render template ``name`` in ``lang`` (``_``, ``gettext``, ``ngettext`` bound to it)."""
    return templates.envs[lang].get_template(name).render(context)
