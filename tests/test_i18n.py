"""The catalogues: every language has every text, with the same placeholders and proper plural forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.i18n import DEFAULT, LANGUAGES, LOCALES, placeholders, resolve, translator

OTHERS = [code for code in LANGUAGES if code != DEFAULT]
# Telegram's limits on texts that go into its own surfaces and into button answers.
LIMITS = {
    "bot_short_description": 120,
    "bot_description": 512,
    **{f"menu_{c}": 256 for c in ("start", "help", "settings", "props", "zip", "pack", "cutout", "lang", "id", "stats")},
    # answerCallbackQuery texts (the settings and pack buttons): at most 200 characters
    **{k: 200 for k in ("settings_changed", "settings_unchanged", "admins_only", "pack_added", "pack_created",
                        "pack_already", "pack_not_started", "pack_cutout_gone", "pack_failed", "pack_working",
                        "not_allowed")},
}


def load(code: str) -> Catalog:
    with (LOCALES / f"{code}.po").open("rb") as source:
        return read_po(source, locale=code)


def texts(catalog: Catalog) -> dict[str, list[str]]:
    """key -> its forms (one, or one per plural form)."""
    found: dict[str, list[str]] = {}
    for message in catalog:
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        found[key] = list(message.string) if isinstance(message.string, tuple) else [message.string]
    return found


ENGLISH = texts(load(DEFAULT))


def test_every_language_has_a_catalogue_with_its_plural_rule() -> None:
    for code in LANGUAGES:
        assert (LOCALES / f"{code}.po").is_file(), f"no catalogue for {code}"
    assert load("ru").num_plurals == 3
    assert load("zh_Hans").num_plurals == 1
    assert load("es").num_plurals == 2 and load("pt_BR").num_plurals == 2


@pytest.mark.parametrize("code", OTHERS)
def test_every_key_is_translated_with_the_same_placeholders(code: str) -> None:
    translated = texts(load(code))
    missing = sorted(k for k in ENGLISH if not all(translated.get(k, [""])))
    assert not missing, f"{code} lacks {missing}"
    extra = sorted(set(translated) - set(ENGLISH))
    assert not extra, f"{code} has keys English does not: {extra}"
    for key, english in ENGLISH.items():
        wanted = set().union(*(placeholders(form) for form in english))
        for form in translated[key]:
            got = placeholders(form)
            # A plural form may leave out the number itself (Russian "одно фото"), nothing else.
            assert got <= wanted and wanted - got <= {"count", "total", "max_pending", "per_minute"}, (
                f"{code} {key}: placeholders {sorted(got)} instead of {sorted(wanted)}"
            )


@pytest.mark.parametrize("code", [DEFAULT, *OTHERS])
def test_plural_texts_have_every_form_and_limited_texts_fit(code: str) -> None:
    catalog = load(code)
    for message in catalog:
        if message.id and isinstance(message.id, tuple):
            assert len(message.string) == catalog.num_plurals and all(message.string), (code, message.id)
    for key, limit in LIMITS.items():
        for form in texts(catalog)[key]:
            assert len(form) <= limit, f"{code} {key} is {len(form)} characters, over {limit}"


def test_russian_numbers_take_their_three_forms() -> None:
    t = translator("ru")
    one, few, many = (t("zip_caption", count=n) for n in (1, 3, 5))
    assert len({one, few, many}) == 3
    assert t("zip_caption", count=21) == t("zip_caption", count=1).replace("1", "21", 1)


def test_language_codes_resolve_to_what_we_speak() -> None:
    assert [resolve(c) for c in ("pt-br", "pt", "zh-hans", "zh", "zh-hant", "es-419", "ru", "fr", None, "")] == [
        "pt_BR", "pt_BR", "zh_Hans", "zh_Hans", "en", "es", "ru", "en", "en", "en",
    ]
    assert translator("fr")("hint_send_photo") == translator("en")("hint_send_photo")


def test_english_is_the_source_every_text_comes_from() -> None:
    english = translator("en")
    assert english("zip_caption", count=1) == "📦 1 prop for printing."
    assert english("zip_caption", count=4) == "📦 4 props for printing."
    assert english("no_such_key") == english("error_generic")
    assert english("no_face", brief=True) == ENGLISH["no_face_brief"][0]


def test_locales_hold_only_catalogues() -> None:
    assert sorted(p.suffix for p in Path(LOCALES).iterdir()) == [".po"] * len(LANGUAGES)
