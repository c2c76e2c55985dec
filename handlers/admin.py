"""/stats: what the bot did today and this week, and what it spent, for the bot's admins."""

from __future__ import annotations

from telegram import Update

from bot.storage.usage import usage_report
from handlers.common import is_private
from handlers.context import BotContext


async def stats_command(update: Update, context: BotContext) -> None:
    """Gives an admin today's and the week's photos, cutouts, failures by reason, cache hits, API tasks
    (the spend), the busiest users and the queue now; others hear that it is for admins."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    if user.id not in context.settings.admin_user_ids:
        await message.reply_text(context.t("stats_admins_only"))
        return
    if not is_private(update):  # it names users: not for a group's eyes
        await message.reply_text(context.t("stats_private"))
        return
    report = usage_report(context.store)
    waiting, working = context.service.queue_now()
    none = context.t("stats_none")
    today, week = report.today, report.week
    await message.reply_text(
        context.t(
            "stats_answer",
            photos_today=today.photos,
            photos_week=week.photos,
            cutouts_today=today.cutouts,
            cutouts_week=week.cutouts,
            failures_today=today.failures,
            failures_week=week.failures,
            cache_today=today.cache_hits,
            cache_week=week.cache_hits,
            tasks_today=today.api_tasks,
            tasks_week=week.api_tasks,
            reasons=", ".join(f"{reason} {count}" for reason, count in report.failures) or none,
            users=", ".join(f"{user_id}: {count}" for user_id, count in report.busiest) or none,
            waiting=waiting,
            working=working,
            open=context.store.count_all_open_jobs(),
        )
    )
