"""The bot's chat commands: each declared once, with its role, cooldown, arguments and handler.

The order here is the order of the README's table and of ``commands.<key>`` in the config.
Wording that the control panel shares lives with the actions (``bot.chat.actions``); what is
only ever said in chat (your voice, the voice list, usage) is here.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from bot.chat import actions
from bot.chat.arguments import CommandError, split_for_chat
from bot.chat.commands.core import (
    Command,
    Component,
    Context,
    Duration,
    Login,
    Speak,
    Spoken,
    Text,
    VoiceWord,
    Volume,
    Word,
    command,
)
from bot.chat.roles import role_name
from bot.core.messages import Role
from bot.state.store import Target

if TYPE_CHECKING:
    from bot.chat.controls import Controls


class Viewers(Component):
    """What every viewer may use: their voice, the voice list, ``!tts``."""

    @command(
        "voice",
        saves=True,
        role=Role.EVERYONE,
        summary=(
            'pick your voice (any case; a typo gets "did you mean ...?"); `!voice random` picks'
            " one for you, `!voice reset` goes back to the default; without a name, tells you"
            " your voice"
        ),
    )
    async def voice(self, ctx: Context, name: VoiceWord | None = None) -> None:
        """Tell, choose or reset the author's voice."""
        user = ctx.user
        controls = self.controls
        store = controls.store
        if name is None:
            current = store.voice_of(user) or controls.default_voice
            await ctx.reply(f"your voice is {current}")
            return
        word = name.casefold()
        if word in ("reset", "random") and (await controls.voices.resolve(name))[0] is None:
            # (unless a voice is really called so)
            if word == "reset":
                default = controls.default_voice
                await store.set_voice(Target.of(user), actions.stored_voice(controls, default))
                await ctx.reply(f"your voice is {default} again")
                return
            pool = await controls.voice_pool()
            if not pool:
                raise CommandError("there are no voices to pick from")
            voice = random.choice(pool)
        else:
            voice = await resolve_voice(ctx, self.controls, name)
        await store.set_voice(Target.of(user), actions.stored_voice(controls, voice))
        await ctx.reply(f"your voice is now {voice}")

    @command(
        "voices",
        role=Role.EVERYONE,
        cooldown_s=30.0,
        summary="lists the voices (at most every 30 s in the channel)",
    )
    async def voices(self, ctx: Context) -> None:
        """List the voices, split over as many chat lines as needed."""
        names = await self.controls.voices.names()
        if not names:
            await ctx.reply("no voices are available")
            return
        limit = ctx.reply_limit
        for line in split_for_chat(f"voices ({ctx.name_of('voice')} NAME): ", names, limit):
            await ctx.reply(line)

    @command(
        "tts",
        role=Role.EVERYONE,
        speaks=True,
        summary="speaks TEXT (useful when `triggers.messages` is off)",
    )
    async def tts(self, ctx: Context, text: Text) -> Speak:
        """Hand the text on to the pipeline (filters, mutes and the cooldown apply)."""
        return Speak(text)


class Moderation(Component):
    """What moderators use: mutes, playback, volume, on/off, someone else's voice."""

    @command(
        "mute",
        saves=True,
        role=Role.MODERATOR,
        summary=(
            "stop reading someone, for a while or until `!unmute`; their queued and playing"
            " messages go at once"
        ),
    )
    async def mute(self, ctx: Context, login: Login, seconds: Duration = None) -> None:
        """Mute someone; moderators cannot mute their equals (the broadcaster can)."""
        issuer = ctx.user
        platform = actions.platform_for(self.controls, issuer, login)
        recent = self.controls.recent_user(platform, login)
        if (
            recent is not None
            and recent[1] >= issuer.role
            and issuer.role < Role.BROADCASTER
            and login != issuer.login
        ):
            raise CommandError(f"you can't mute {login}: they are a {role_name(recent[1])}")
        outcome = await actions.mute_user(
            self.controls, login, platform=platform, seconds=seconds, by=issuer.login
        )
        await ctx.ack(outcome.reply)

    @command("unmute", saves=True, role=Role.MODERATOR, summary="lift a mute")
    async def unmute(self, ctx: Context, login: Login) -> None:
        """Lift a mute."""
        platform = actions.platform_for(self.controls, ctx.user, login)
        await ctx.ack((await actions.unmute_user(self.controls, login, platform)).reply)

    @command("skip", role=Role.MODERATOR, summary="stop the message that is playing")
    async def skip(self, ctx: Context) -> None:
        """Stop the playing message."""
        await ctx.ack(actions.skip(self.controls).reply)

    @command("clear", role=Role.MODERATOR, summary="empty the queue (the playing message finishes)")
    async def clear(self, ctx: Context) -> None:
        """Empty the queue."""
        await ctx.ack(actions.clear(self.controls).reply)

    @command(
        "pause",
        saves=True,
        role=Role.MODERATOR,
        summary="hold the queue (the playing message finishes)",
    )
    async def pause(self, ctx: Context) -> None:
        """Hold the queue."""
        await ctx.ack((await actions.pause(self.controls)).reply)

    @command("resume", saves=True, role=Role.MODERATOR, summary="play the held queue again")
    async def resume(self, ctx: Context) -> None:
        """Play the queue again."""
        await ctx.ack((await actions.resume(self.controls)).reply)

    @command(
        "volume",
        saves=True,
        role=Role.MODERATOR,
        summary="set the volume (`40`, `40%`, `+10`, `-10`); without a number, tell it",
    )
    async def volume(self, ctx: Context, level: Volume | None = None) -> None:
        """Tell or set the volume."""
        current = round(self.controls.volume * 100)
        if level is None:
            await ctx.reply(f"volume is {current}%")
            return
        said = await actions.set_volume(self.controls, level.applied_to(current))
        await ctx.ack(said.reply)

    @command(
        "ttsoff",
        saves=True,
        role=Role.MODERATOR,
        summary="stop reading chat (drops the queue); commands keep working",
    )
    async def ttsoff(self, ctx: Context) -> None:
        """Turn reading off."""
        await ctx.ack((await actions.set_tts(self.controls, False)).reply)

    @command("ttson", saves=True, role=Role.MODERATOR, summary="start reading chat again")
    async def ttson(self, ctx: Context) -> None:
        """Turn reading on."""
        await ctx.ack((await actions.set_tts(self.controls, True)).reply)

    @command(
        "setvoice",
        saves=True,
        role=Role.MODERATOR,
        summary="pick a voice for someone else (also before they have chatted)",
    )
    async def setvoice(self, ctx: Context, login: Login, name: VoiceWord) -> None:
        """Choose someone else's voice."""
        voice = await resolve_voice(ctx, self.controls, name)
        platform = actions.platform_for(self.controls, ctx.user, login)
        said = await actions.set_voice_of(self.controls, login, voice, platform)
        await ctx.ack(said.reply)


class Pronunciation(Component):
    """How words are said: moderators teach and forget spoken forms (saved)."""

    @command(
        "say",
        saves=True,
        role=Role.MODERATOR,
        enabled=False,
        summary="teach how a word is said, e.g. `!say GG as good game` (saved)",
    )
    async def say(self, ctx: Context, word: Word, spoken: Spoken) -> None:
        """Save a spoken form."""
        said = await actions.teach_word(self.controls, word, spoken, by=ctx.user.login)
        await ctx.ack(said.reply)

    @command(
        "unsay",
        saves=True,
        role=Role.MODERATOR,
        enabled=False,
        summary="say a word as written again (forgets what `!say` taught)",
    )
    async def unsay(self, ctx: Context, word: Word) -> None:
        """Forget a spoken form."""
        await ctx.ack((await actions.forget_word(self.controls, word, by=ctx.user.login)).reply)


async def resolve_voice(ctx: Context, controls: Controls, name: str) -> str:
    """The real name of the voice ``name`` (any case), or a reply that suggests one.

    Raises:
        CommandError: There is no such voice.
    """
    found, suggestion = await controls.voices.resolve(name)
    if found is None:
        hint = f" Did you mean {suggestion}?" if suggestion else ""
        raise CommandError(
            f"there is no voice called {name}.{hint} {ctx.name_of('voices')} lists them"
        )
    return found


COMPONENTS: tuple[type[Component], ...] = (Viewers, Moderation, Pronunciation)
"""Every component, in the order of their commands in the README and the config."""

COMMANDS: tuple[Command, ...] = tuple(c for component in COMPONENTS for c in component.commands)
"""Every chat command the bot knows."""

COMMAND_KEYS: tuple[str, ...] = tuple(c.key for c in COMMANDS)
"""Their keys under ``commands`` in the config."""

BY_KEY: dict[str, Command] = {c.key: c for c in COMMANDS}
"""Each declaration by its key."""
