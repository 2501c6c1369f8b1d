"""Speech: the bounded priority queue, the speaker loop, the audio player and output devices.

Control beats data here: skip, delete, purge and clear act on queued and playing audio at once.
"""
