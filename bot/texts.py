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
            "/settings: crop, white outline, PNG or JPG. /pack shows your sticker pack, /help says more."
        ),
        "start_pack": "Hi {name}! You're all set: go back and tap “Add to my pack” again.",
        "help": (
            "How to use me:\n"
            "• Send a photo (or an image file: JPG, PNG, WEBP, HEIC, AVIF, BMP, TIFF or GIF, a static sticker, or a link to a picture) with one face, "
            "looking at the camera, in good light.\n"
            "• I reply with a sticker and a transparent PNG.\n"
            "• /settings: crop tight to the head or keep the whole photo; sticker, PNG or JPG on white; "
            "a white sticker outline; the emoji for your pack.\n"
            "• /props: event mode. Every cutout also comes as a print-ready prop (full resolution, "
            "300 DPI); /zip sends all of them in one ZIP for the printer.\n"
            "• Tap “Add to my pack” under a result to collect it in your own sticker pack; /pack gives the link.\n"
            "• In any chat, type @{bot} to drop one of your recent cutouts.\n"
            "• In groups, reply to a photo with /cutout, or send a photo with the caption /cutout. "
            "There, /settings and /props belong to the group's admins.\n\n"
            "You can have up to {max_pending} photos waiting and send up to {per_minute} a minute."
        ),
        "hint_send_photo": "Send me a photo with a face and I'll cut out the head as a sticker. /help says more.",
        "group_reply_to_photo": "Reply to a photo with /cutout, or send a photo with the caption /cutout.",
        "group_reply_to_photo_brief": "Reply to a photo with /cutout.",
        "cutout_alone": "Just send me a photo (or a link to one) and I'll cut out the head. No command needed.",
        "start_group": (
            "Hi! To get a sticker here, reply to a photo with /cutout, or send a photo with the caption /cutout.\n"
            "/help explains more; /settings and /props are for this group's admins."
        ),
        "help_group": (
            "In this group:\n"
            "• Reply to a photo (or an image file, a sticker, a link) with /cutout, or mention @{bot} in the reply.\n"
            "• Or send a photo, a file or an album with the caption /cutout.\n"
            "• I answer with a sticker and a PNG; tap “Add to my pack” to keep one in your own pack "
            "(start me in a private chat first).\n"
            "• Admins: /settings (crop, outline, PNG or JPG), /props (event props), /zip (all props as a ZIP).\n"
            "In a private chat, just send me photos."
        ),
        "not_still": (
            "I can only cut out still pictures. Send a photo, an image file or a static sticker "
            "(not a GIF, video, voice message or animated sticker)."
        ),
        "not_still_brief": "Send a still photo, not a video or animation.",
        "not_allowed": "Sorry, this bot is private.",
        "menu_start": "What this bot does",
        "menu_help": "How to use it: photos, packs, groups, inline",
        "menu_pack": "Links to your sticker pack",
        "menu_cutout": "In groups: reply to a photo to cut it out",
        "menu_settings": "Crop, outline, PNG or JPG, pack emoji",
        "menu_props": "Event mode: print-ready props on or off",
        "menu_zip": "All props made here, in one ZIP",
        "unknown_command": "I don't know that command. Try /settings, /props, /zip, /pack or /help.",
        # --- progress -----------------------------------------------------------------------------
        "status_received": "📥 Got it, one moment…",
        "status_queued": "⏳ #{position} in line. I'll start on your photo soon.",
        "status_working": "✂️ Cutting out your photo…",
        "status_received_batch": "📥 Got them, one moment…",
        "status_queued_batch": "⏳ Photos: {total}. #{position} in line; I'll answer them in order.",
        "status_progress": "✂️ Done: {done} of {total}…",
        "png_caption": "Transparent PNG, ready for stickers or printing.",
        "prop_caption": "🖨 Print-ready prop: {width} × {height} px, {cm_w} × {cm_h} cm at 300 DPI.",
        "prop_caption_brief": "🖨 Prop: {width} × {height} px, 300 DPI.",
        "prop_caption_shrunk": (
            "🖨 Print-ready prop: {width} × {height} px, {cm_w} × {cm_h} cm at 300 DPI. "
            "Shrunk to {percent}% of full size to stay under Telegram's 50 MB limit."
        ),
        "prop_small_hint": " For a bigger print, send the photo as a file (📎 → File).",
        "prop_caption_shrunk_brief": "🖨 Prop: {width} × {height} px, 300 DPI ({percent}% of full size, for the 50 MB limit).",
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
        "too_many_pending_many": (
            "I couldn't take {count} of those photos: you can have {max_pending} waiting at once. "
            "Send them again once I've answered the ones before (I reply to each)."
        ),
        "too_many_per_minute_many": (
            "I couldn't take {count} of those photos: that's more than {per_minute} a minute. "
            "Send them again in {seconds} s."
        ),
        "shutting_down_many": "I'm restarting right now, so I couldn't take {count} photos. Send them again in a minute.",
        "busy_many": "I'm very busy right now, so I couldn't take {count} photos. Send them again in a minute.",
        # --- refused input (no quota spent) -------------------------------------------------------
        "bad_input": "I couldn't use that file. Please send a regular photo.",
        "not_an_image": (
            "That file isn't an image I can read. Send a photo, or a JPG, PNG, WEBP, HEIC, AVIF, BMP, TIFF or GIF file."
        ),
        "not_an_image_brief": "That file isn't an image.",
        "empty_file": "That file is empty. Please send the photo again.",
        "corrupt_image": "That image looks damaged or incomplete, so I can't read it. Try exporting it again.",
        "corrupt_image_brief": "That image looks damaged.",
        "image_too_large": "That image is too large to process. Please send a smaller one (under 50 megapixels).",
        "image_too_small": (
            "That picture is only {width} × {height} px: too small to find a face in. "
            "Please send a bigger photo (at least 128 px)."
        ),
        "image_too_small_brief": "That picture is too small (under 128 px).",
        "file_too_big": (
            "That file is over 20 MB, the largest Telegram lets me download. "
            "Send it as a photo instead, or shrink it first."
        ),
        "file_too_big_brief": "That file is over 20 MB; send it as a photo.",
        "extreme_aspect": (
            "That image is very long and thin. Please send a normal photo (no wider or taller than 8:1)."
        ),
        # --- links -------------------------------------------------------------------------------
        "link_not_picture": (
            "That link doesn't look like a picture. Send a link straight to an image (ending in .jpg, "
            ".png…), or send the photo itself."
        ),
        "link_not_picture_brief": "That link doesn't look like a picture.",
        "link_unreachable": (
            "I couldn't fetch the picture at that link: it may be private, gone or behind a login. "
            "Send the photo itself instead."
        ),
        "link_unreachable_brief": "I couldn't fetch that link.",
        "link_too_large": "The picture at that link is over 30 MB. Send a smaller one, or the photo itself.",
        "link_not_image": "That link doesn't lead to an image I can use. Send a link to a JPG or PNG, or the photo.",
        "link_not_image_brief": "That link isn't an image.",
        # --- the chat --------------------------------------------------------------------------------
        "chat_restricted": (
            "I'm not allowed to send stickers or files in this chat. An admin can let me send media here."
        ),
        "chat_restricted_brief": "I'm not allowed to send media here: an admin can allow it.",
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
        # --- settings -----------------------------------------------------------------------------
        "settings_private": "⚙️ Your settings:\n{summary}\n\nTap a button to change one.",
        "settings_group": "⚙️ This group's settings:\n{summary}\n\nOnly the group's admins can change them.",
        "settings_summary": (
            "✂️ Crop: {crop}\n📤 You get: {output}\n⚪ White outline: {outline}\n"
            "🖨 Event props: {props}\n🏷 Pack emoji: {emoji}"
        ),
        "crop_1": "tight to the head",
        "crop_0": "whole photo",
        "output_sticker+png": "sticker + PNG",
        "output_sticker": "sticker only",
        "output_png": "PNG only",
        "output_jpg": "JPG on white",
        "on": "on",
        "off": "off",
        "button_crop_1": "Head only",
        "button_crop_0": "Whole photo",
        "button_output_sticker+png": "Sticker + PNG",
        "button_output_sticker": "Sticker",
        "button_output_png": "PNG",
        "button_output_jpg": "JPG on white",
        "button_outline": "White outline",
        "button_props": "Event props",
        "settings_changed": "✅ {what}: {value}",
        "settings_unchanged": "That's already the setting.",
        "what_crop": "Crop",
        "what_output": "You get",
        "what_outline": "White outline",
        "what_props": "Event props",
        "what_emoji": "Pack emoji",
        "admins_only": "Only this group's admins can change that.",
        "props_on": (
            "🖨 Event props are on. Every cutout here also comes as a print-ready PNG at full resolution "
            "(300 DPI, transparent margin). Send /zip for all of them in one ZIP."
        ),
        "props_on_brief": "🖨 Event props on: every cutout also comes as a print-ready prop. /zip collects them.",
        "props_off": "Event props are off. Send /props to switch them back on.",
        "zip_none": "No new props here since the last /zip. Switch on /props, then send photos.",
        "zip_caption": "📦 Props for printing: {count}.",
        "zip_caption_part": "📦 Props for printing: {count}. Part {part} of {parts}.",
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
