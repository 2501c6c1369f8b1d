"""Tools a streamer runs by hand: the doctor, voice import, sign-in, and start-up progress."""
