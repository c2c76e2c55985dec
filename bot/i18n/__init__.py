"""The bot's texts in every language it speaks: gettext catalogues (``locales/<language>.po``) read with Babel.

Each text has a key (the msgid); English (``en.po``) is the source and the fallback for anything a
translation lacks. A text that a number changes has plural forms, chosen by the placeholder named in
its comment (``plural by {count}``), so Russian gets its three forms. A text may have a brief variant
(``<key>_brief``) for groups, where long texts are noise.

To add a language: copy ``en.po`` to ``locales/<code>.po``, set its ``Language`` and ``Plural-Forms``
header, translate every ``msgstr``, and add the code to :data:`LANGUAGES`; ``tests/test_i18n.py`` checks
that every key, placeholder and plural form is there.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).parent / "locales"
DEFAULT = "en"
#: The languages the bot speaks, each named in itself (for the language buttons).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Español",
    "ru": "Русский",
    "pt_BR": "Português (Brasil)",
    "zh_Hans": "简体中文",
}
_PLURAL_BY = re.compile(r"plural by \{(\w+)\}")


def resolve(code: str | None) -> str:
    """The language to speak for a Telegram ``language_code`` (``pt-br`` → ``pt_BR``, ``zh-hans`` →
    ``zh_Hans``, ``es-419`` → ``es``) or a stored choice; English when we don't speak it."""
    if not code:
        return DEFAULT
    if code in LANGUAGES:
        return code
    parts = code.replace("_", "-").lower().split("-")
    if parts[0] == "pt":
        return "pt_BR"  # the Portuguese we have; Telegram sends plain "pt" for most users
    if parts[0] == "zh":
        # Traditional script (zh-hant, zh-tw, zh-hk) is not spoken here: English reads better than the
        # wrong script.
        return "zh_Hans" if not set(parts[1:]) & {"hant", "tw", "hk", "mo"} else DEFAULT
    return parts[0] if parts[0] in LANGUAGES else DEFAULT


@dataclass(frozen=True)
class _Catalogue:
    translations: gettext.GNUTranslations
    keys: frozenset[str]
    plural_by: dict[str, str]  # key -> the placeholder whose number picks the form


@functools.cache
def _catalogue(language: str) -> _Catalogue:
    with (LOCALES / f"{language}.po").open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    translations = gettext.GNUTranslations(compiled)
    keys: set[str] = set()
    plural_by: dict[str, str] = {}
    for message in catalog:
        if not message.id:
            continue
        key = str(message.id if isinstance(message.id, str) else message.id[0])
        keys.add(key)
        for comment in message.auto_comments:
            if found := _PLURAL_BY.search(comment):
                plural_by[key] = found.group(1)
    return _Catalogue(translations, frozenset(keys), plural_by)


class Translator:
    """Texts in one language; English where a text is missing."""

    def __init__(self, language: str) -> None:
        self.language = resolve(language)
        own, english = _catalogue(self.language), _catalogue(DEFAULT)
        self._english = english
        self._translations = own.translations
        if own is not english:
            self._translations.add_fallback(english.translations)

    def __call__(self, key: str, *, brief: bool = False, **values: Any) -> str:
        """The text for ``key`` (its ``_brief`` variant when asked and there is one), filled with ``values``."""
        if brief and f"{key}_brief" in self._english.keys:
            key = f"{key}_brief"
        if key not in self._english.keys:
            key = "error_generic"
        counter = self._english.plural_by.get(key)
        if counter is not None:
            template = self._translations.ngettext(key, f"{key}_plural", int(values.get(counter, 0)))
        else:
            template = self._translations.gettext(key)
        return template.format(**values)

    @property
    def name(self) -> str:
        return LANGUAGES[self.language]


@functools.cache
def translator(language: str | None) -> Translator:
    """The translator for a language code (resolved as :func:`resolve` does)."""
    return Translator(resolve(language))


def placeholders(template: str) -> set[str]:
    """The named placeholders a text uses (for the catalogue checks)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


__all__ = ["DEFAULT", "LANGUAGES", "LOCALES", "Translator", "placeholders", "resolve", "translator"]
