"""The chat pipeline: from a normalized chat message to a queued speech item, or a reason not to.

Commands, filters, triggers, mutes and moderation actions. Sees only ``bot.core`` message types,
never a platform's.
"""
