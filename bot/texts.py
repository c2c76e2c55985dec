"""Every text a user or an admin can see, by key, in the user's language (catalogues in ``bot/i18n``).

Handlers read texts through their context's translator (``context.t``); the machinery that answers
later (workers, the messenger) uses :func:`text` with the job's language.
"""

from __future__ import annotations

from typing import Any

from bot.i18n import translator


def text(key: str, *, lang: str | None = None, brief: bool = False, **values: Any) -> str:
    """The text for ``key`` in ``lang`` (English when we don't speak it), formatted with ``values``.

    ``brief`` picks the ``<key>_brief`` variant when there is one (for groups).
    """
    return translator(lang)(key, brief=brief, **values)
