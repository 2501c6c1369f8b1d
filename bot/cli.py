"""The ``ishowtts`` command line.

``ishowtts [--config PATH] [run]`` starts the bot; ``say`` speaks (or writes) one line;
``devices`` lists audio outputs; ``voices`` lists voices and their problems; ``sounds``
lists (``sounds add`` imports) the sound effects chat plays; ``serve`` serves
the voices to other programs and PCs (``bot.serve``). Every user-facing
failure (bad config, no audio device, missing weights) ends with a plain message and a
non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("config.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ishowtts", description="Speak your Twitch and YouTube chat aloud in cloned voices."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: ./config.yaml; built-in defaults when it does not exist)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default)")
    say = sub.add_parser("say", help="speak one line and exit")
    say.add_argument("text", help="what to say")
    say.add_argument("--voice", default=None, help="voice name (default: voices.default)")
    say.add_argument("--out", type=Path, default=None, help="write a WAV file instead of playing")
    sub.add_parser("devices", help="list audio output devices and their rates")
    voices = sub.add_parser("voices", help="list the voices found, with problems if any")
    voices_sub = voices.add_subparsers(dest="voices_command")
    add = voices_sub.add_parser("add", help="import a clip as a new voice (checked and converted)")
    add.add_argument("name", help="the voice's name: letters, digits, '-' or '_'")
    add.add_argument("clip", type=Path, help="audio file: WAV, FLAC, OGG, MP3 ...")
    add.add_argument("--text", default=None, help="the exact words spoken in the clip")
    add.add_argument("--yes", action="store_true", help="accept a recognised transcript")
    add.add_argument("--force", action="store_true", help="replace a voice of that name")
    test = voices_sub.add_parser("test", help="speak a line in one voice")
    test.add_argument("name", help="voice name")
    test.add_argument("text", nargs="?", default=None, help="what to say")
    test.add_argument("--out", type=Path, default=None, help="write a WAV file instead")
    sounds = sub.add_parser("sounds", help="list the sound effects chat can play ([name])")
    sounds_sub = sounds.add_subparsers(dest="sounds_command")
    sound_add = sounds_sub.add_parser(
        "add", help="import a clip as a sound effect (checked, loudness-normalised)"
    )
    sound_add.add_argument("clip", type=Path, help="audio file: WAV, FLAC, OGG, MP3 ...")
    sound_add.add_argument("--name", default=None, help="its tag (default: the file's name)")
    sound_add.add_argument("--force", action="store_true", help="replace a sound of that name")
    sub.add_parser("doctor", help="check everything the bot needs and say what to fix")
    serve = sub.add_parser(
        "serve", help="serve the voices over HTTP (OpenAI-compatible speech API) for other PCs"
    )
    serve.add_argument("--print-token", action="store_true", help="print the token and exit")
    serve.add_argument(
        "--ray", action="store_true", help="run on Ray Serve: one replica per GPU (docs/serve.md)"
    )
    serve.add_argument(
        "--ray-config", type=Path, default=None, help="YAML file of the Ray settings (--ray)"
    )
    login = sub.add_parser("login", help="sign in to Twitch or YouTube (shows a code to enter)")
    login.add_argument(
        "platform",
        nargs="?",
        choices=("twitch", "youtube"),
        default="twitch",
        help="default: twitch",
    )
    return parser


def _setup_logging(verbose: bool) -> None:
    from bot.core.platform import tolerate_unencodable

    for stream in (sys.stdout, sys.stderr):  # emoji in chat, on a cp1252 stream (Windows)
        tolerate_unencodable(stream)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not verbose:
        # Third-party chatter that says nothing a streamer can act on.
        for noisy in ("httpx", "urllib3", "numba", "matplotlib", "twitchio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(path: Path | None) -> Config:
    if path is None:
        if DEFAULT_CONFIG.exists():
            return load_config(DEFAULT_CONFIG)
        from bot.config import parse_config

        return parse_config({}, Path.cwd())
    return load_config(path)


async def _run_bot(cfg: Config) -> int:
    from bot.app import App, SourceGroup
    from bot.core.platform import install_stop_handler
    from bot.setup.progress import load_progress
    from bot.sources.base import ChatSource
    from bot.sources.terminal import TerminalSource
    from bot.sources.twitch.source import TwitchSetupError, twitch_source_from_config
    from bot.sources.youtube.source import YouTubeSetupError, youtube_source_from_config
    from bot.speech.devices import AudioDeviceError
    from bot.state.settings import state_dir

    source: ChatSource | None = None
    if cfg.chat.source != "terminal":
        try:
            source = await twitch_source_from_config(
                cfg.twitch,
                state_dir(cfg.storage),
                required=cfg.chat.source == "twitch",
                command_prefix=cfg.commands.prefix,
            )
        except TwitchSetupError as exc:
            log.error("%s", exc)
            return 2
    youtube: ChatSource | None = None
    if cfg.youtube.enabled:
        try:
            youtube = await youtube_source_from_config(
                cfg.youtube,
                state_dir(cfg.storage),
                required=True,
                command_prefix=cfg.commands.prefix,
            )
        except YouTubeSetupError as exc:
            log.error("%s", exc)
            return 2
    progress = load_progress(cfg)
    await progress.start()
    app = App(cfg, on_engine_state=progress)
    # Ctrl-C and friends stop cleanly on every OS (Windows' loop has no add_signal_handler).
    remove_stop_handler = install_stop_handler(asyncio.get_running_loop(), app.request_stop)
    try:
        await app.start()
    except AudioDeviceError as exc:
        log.error("%s", exc)
        await app.close()
        await progress.close()
        remove_stop_handler()
        return 2
    sources = [s for s in (source, youtube) if s is not None]
    if cfg.chat.source == "terminal" or not sources:
        sources.insert(0, TerminalSource())
        log.info("reading chat from the terminal: type a line and press Enter (Ctrl-C quits)")
    try:
        return await app.run(sources[0] if len(sources) == 1 else SourceGroup(sources))
    finally:
        await app.close()
        await progress.close()
        remove_stop_handler()


async def _say(cfg: Config, text: str, voice: str | None, out: Path | None) -> int:
    from bot.core.text import clean_for_speech
    from bot.setup.progress import load_progress
    from bot.speech.player import AudioPlayer
    from bot.state.settings import state_dir
    from engine.base import Engine, EngineState
    from engine.factory import create_engine
    from engine.worker import EngineWorker, SynthesisFailed

    spoken = clean_for_speech(text, cfg.chat.max_length)
    if not spoken:
        log.error("nothing speakable in %r", text)
        return 2
    progress = load_progress(cfg, announce=True)
    await progress.start()
    worker = EngineWorker(
        create_engine(cfg.engine, cfg.voices, cache_dir=state_dir(cfg.storage)), on_state=progress
    )
    player: AudioPlayer | None = None
    try:
        if out is None:
            player = AudioPlayer(cfg.audio)
            await player.start()
        await worker.start()
        if await worker.wait_ready() is EngineState.ERROR:
            log.error("the TTS engine could not load: %s", worker.state_detail)
            return 1
        job = worker.submit(spoken, (voice or cfg.voices.default).lower())
        try:
            if out is not None:
                audio = await job.collect()
                rate = job.sample_rate

                def write(_engine: Engine) -> None:
                    import soundfile

                    soundfile.write(str(out), audio, rate, subtype="PCM_16")

                await worker.call(write)
                print(f"wrote {out} ({len(audio) / rate:.2f} s at {rate} Hz)")
            else:
                assert player is not None
                await player.play(aiter(job), job.sample_rate)
        except SynthesisFailed as exc:
            log.error("could not synthesise: %s", exc)
            return 1
        return 0
    finally:
        await worker.close()
        await progress.close()
        if player is not None:
            await player.close()


def _serve(
    cfg: Config, *, print_only: bool, ray: bool = False, ray_config: Path | None = None
) -> int:
    from bot.serve.run import print_token, serve
    from bot.setup.progress import load_progress

    if print_only:
        return print_token(cfg)
    if ray:
        try:
            from bot.serve.ray_app import serve_ray_command
        except ImportError as exc:
            log.error("ishowtts serve --ray needs Ray Serve (%s): pip install 'ishowtts[ray]'", exc)
            return 2
        return serve_ray_command(cfg, ray_config)

    async def main() -> int:
        progress = load_progress(cfg)
        await progress.start()
        try:
            return await serve(cfg, on_engine_state=progress)
        finally:
            await progress.close()

    return asyncio.run(main())


def _devices() -> int:
    from bot.speech.devices import AudioDeviceError, list_output_devices

    try:
        devices = list_output_devices()
    except AudioDeviceError as exc:
        print(exc)
        return 2
    if not devices:
        print("No audio output devices found. Is PortAudio installed and a sound server running?")
        return 2
    print(f"{'index':>5}  {'rate':>6}  {'ch':>2}  name")
    for dev in devices:
        mark = " (default)" if dev.is_default else ""
        where = f"{dev.name} [{dev.hostapi}]{mark}"
        print(f"{dev.index:>5}  {dev.default_rate:>6}  {dev.channels:>2}  {where}")
    print("\nSet audio.device in config.yaml to a name (or part of it) or an index.")
    return 0


def _voices(cfg: Config) -> int:
    from engine.voices import VoiceLibrary

    voices = VoiceLibrary(cfg.voices).scan()
    problems = 0
    print(f"voices from {cfg.voices.dir} (default: {cfg.voices.default})")
    for name in sorted(voices):
        spec = voices[name]
        where = "built in" if spec.builtin else str(spec.clip)
        if spec.problem:
            problems += 1
            print(f"  {name:<20} PROBLEM: {spec.problem}")
        else:
            print(f"  {name:<20} {where}")
    if cfg.voices.default not in voices:
        print(f"  default voice {cfg.voices.default!r} was not found")
        problems += 1
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ishowtts`` console script and ``python -m bot``."""
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.command == "doctor":
        from bot.setup.doctor import doctor_command

        return doctor_command(args.config)
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(f"ishowtts: {exc}", file=sys.stderr)
        return 2
    command = args.command or "run"
    try:
        if command == "run":
            return asyncio.run(_run_bot(cfg))
        if command == "login" and args.platform == "youtube":
            from bot.setup.login import youtube_login_command

            return youtube_login_command(cfg)
        if command == "login":
            from bot.setup.login import login_command

            return login_command(cfg)
        if command == "say":
            return asyncio.run(_say(cfg, args.text, args.voice, args.out))
        if command == "devices":
            return _devices()
        if command == "serve":
            return _serve(
                cfg, print_only=args.print_token, ray=args.ray, ray_config=args.ray_config
            )
        if command == "voices" and args.voices_command == "add":
            from bot.setup.voice_import import add_voice_command

            return add_voice_command(
                cfg.voices, args.name, args.clip, args.text, yes=args.yes, force=args.force
            )
        if command == "voices" and args.voices_command == "test":
            from bot.setup.voice_import import DEFAULT_TEST_LINE, voice_problem

            problem = voice_problem(cfg.voices, args.name)
            if problem is not None:
                print(f"ishowtts: {problem}", file=sys.stderr)
                return 2
            line = args.text or DEFAULT_TEST_LINE.format(name=args.name)
            return asyncio.run(_say(cfg, line, args.name, args.out))
        if command == "voices":
            return _voices(cfg)
        if command == "sounds":
            from bot.setup.sounds_import import add_sound_command, list_sounds_command

            if args.sounds_command == "add":
                return add_sound_command(cfg.sounds, args.clip, args.name, force=args.force)
            return list_sounds_command(cfg.sounds)
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
