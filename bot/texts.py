"""Every text a user or an admin can see, keyed by message id.

Handlers and the error hierarchy refer to keys; nothing user-facing is written inline elsewhere.
A key may have a brief variant (``<key>_brief``) used in groups, where long texts are noise.
"""

from __future__ import annotations

from typing import Any

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        # --- commands -----------------------------------------------------------------------------
        "start": (
            "Hi {name}! Send me a photo of a face and I'll cut out the head on a transparent "
            "background: you get a ready sticker and a sticker-ready PNG.\n\n"
            "Tip: send it as a file (📎 → File) for the sharpest result.\n"
            "/pack shows your sticker pack, /help says more."
        ),
        "start_pack": "Hi {name}! You're all set: go back and tap “Add to my pack” again.",
        "help": (
            "How to use me:\n"
            "• Send a photo (or an image file: JPG, PNG, WEBP, BMP, TIFF, GIF) with one face, "
            "looking at the camera, in good light.\n"
            "• I reply with a sticker and a transparent PNG (good for printing props).\n"
            "• Tap “Add to my pack” under a result to collect it in your own sticker pack; /pack gives the link.\n"
            "• In any chat, type @{bot} to drop one of your recent cutouts.\n"
            "• In groups, reply to a photo with /cutout, or send a photo with the caption /cutout.\n\n"
            "You can have up to {max_pending} photos waiting and send up to {per_minute} a minute."
        ),
        "hint_send_photo": "Send me a photo with a face and I'll cut out the head as a sticker. /help says more.",
        "group_reply_to_photo": "Reply to a photo with /cutout, or send a photo with the caption /cutout.",
        "group_reply_to_photo_brief": "Reply to a photo with /cutout.",
        "not_allowed": "Sorry, this bot is private.",
        "menu_start": "What this bot does",
        "menu_help": "How to use it: photos, packs, groups, inline",
        "menu_pack": "Links to your sticker pack",
        "menu_cutout": "In groups: reply to a photo to cut it out",
        # --- progress -----------------------------------------------------------------------------
        "status_received": "📥 Got it, one moment…",
        "status_queued": "⏳ #{position} in line. I'll start on your photo soon.",
        "status_working": "✂️ Cutting out your photo…",
        "png_caption": "Transparent PNG, ready for stickers or printing.",
        "button_add_to_pack": "➕ Add to my pack",
        # --- limits -------------------------------------------------------------------------------
        "too_many_pending": (
            "You already have {max_pending} photos waiting. Send this one again when one of them is done."
        ),
        "too_many_pending_brief": "You have {max_pending} photos waiting; try again when one is done.",
        "too_many_per_minute": (
            "That's more than {per_minute} photos in a minute. Please send this one again in {seconds} s."
        ),
        "too_many_per_minute_brief": "Too many photos at once; try again in {seconds} s.",
        "shutting_down": "I'm restarting right now. Please send this photo again in a minute.",
        # --- refused input (no quota spent) -------------------------------------------------------
        "bad_input": "I couldn't use that file. Please send a regular photo.",
        "not_an_image": (
            "That file isn't an image I can read. Send a photo, or a JPG, PNG, WEBP, BMP, TIFF or GIF file."
        ),
        "not_an_image_brief": "That file isn't an image.",
        "empty_file": "That file is empty. Please send the photo again.",
        "corrupt_image": "That image looks damaged or incomplete, so I can't read it. Try exporting it again.",
        "corrupt_image_brief": "That image looks damaged.",
        "image_too_large": "That image is too large to process. Please send a smaller one (under 50 megapixels).",
        "file_too_big": (
            "That file is over 20 MB, the largest Telegram lets me download. "
            "Send it as a photo instead, or shrink it first."
        ),
        "file_too_big_brief": "That file is over 20 MB; send it as a photo.",
        "extreme_aspect": (
            "That image is very long and thin. Please send a normal photo (no wider or taller than 8:1)."
        ),
        # --- the cutout service -------------------------------------------------------------------
        "no_face": (
            "I couldn't find a face in that photo. Send a clear photo of one person facing the camera, "
            "with the whole head in the frame and good light."
        ),
        "no_face_brief": "No face found. Try a clear, front-facing photo.",
        "content_refused": "The cutout service refused this image's content, so I can't make a sticker from it.",
        "content_refused_brief": "The cutout service refused this image.",
        "too_slow": "The cutout took too long this time. Please send the photo again in a minute.",
        "too_slow_brief": "That took too long; please try again.",
        "service_trouble": (
            "The cutout service is having trouble right now. I tried several times; "
            "please send the photo again in a few minutes."
        ),
        "service_trouble_brief": "The cutout service is having trouble; try again later.",
        "service_unavailable": (
            "The cutout service is unavailable for now: it needs attention from whoever runs this bot. "
            "Please try again later."
        ),
        "service_unavailable_brief": "The cutout service is unavailable for now.",
        "service_bad_answer": (
            "The cutout service sent back something I can't use. Please send the photo again later."
        ),
        "service_bad_answer_brief": "The cutout service sent back something I can't use.",
        "busy": "I'm very busy right now. Please send the photo again in a minute.",
        "api_bad_request": "The cutout service couldn't use this image. Please try a different photo.",
        "api_failed": "The cutout didn't work for this photo. Please try a different one.",
        "api_failed_brief": "The cutout didn't work for this photo.",
        "error_generic": "Something went wrong on my side with that photo. Please send it again.",
        "error_generic_brief": "Something went wrong; please try again.",
        # --- sticker packs ------------------------------------------------------------------------
        "pack_added": "Added to your pack “{title}”.",
        "pack_created": "Created your pack “{title}” with this sticker.",
        "pack_already": "That one is already in your pack.",
        "pack_links": "Your sticker pack:\n{links}",
        "pack_none": "You have no pack yet. Tap “Add to my pack” under one of your cutouts to start one.",
        "pack_not_started": "Open a private chat with me and press Start first, then tap the button again.",
        "pack_start_button": "Start the bot",
        "pack_cutout_gone": "I no longer have that cutout. Send the photo again to make a new one.",
        "pack_failed": "I couldn't add that to your pack right now. Please try again in a minute.",
        "pack_working": "Adding to your pack…",
        # --- inline mode --------------------------------------------------------------------------
        "inline_empty": "No cutouts yet: send me a photo",
        # --- admins -------------------------------------------------------------------------------
        "admin_key_rejected": (
            "⚠️ PicWish rejected the API key (HTTP 401). Cutouts are failing until PICWISH_API_KEY is "
            "fixed or the service is re-enabled. I won't repeat this alert until a cutout succeeds again."
        ),
        "admin_key_recovered": "✅ PicWish accepts the API key again; cutouts are working.",
    }
}

DEFAULT_LANGUAGE = "en"


def text(key: str, *, lang: str | None = None, brief: bool = False, **values: Any) -> str:
    """The text for ``key`` in ``lang`` (falling back to English), formatted with ``values``.

    ``brief`` picks the ``<key>_brief`` variant when there is one (for groups).
    """
    catalogue = CATALOGUE.get((lang or "")[:2].lower(), CATALOGUE[DEFAULT_LANGUAGE])
    english = CATALOGUE[DEFAULT_LANGUAGE]
    if brief:
        for source in (catalogue, english):
            if f"{key}_brief" in source:
                return source[f"{key}_brief"].format(**values)
    template = catalogue.get(key) or english.get(key) or english["error_generic"]
    return template.format(**values)
