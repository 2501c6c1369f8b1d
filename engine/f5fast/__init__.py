"""The project's accelerated F5-TTS sampler, by concern.

* ``model``: f5's DiT arithmetic restated (weights, time schedule, block, attention);
* ``attention``: which key-masking kernel to use, checked and timed at start-up;
* ``compiler``: torch.compile of the block, its on-disk cache scoped to the sampler;
* ``layout``: where requests sit in a pass (single, or packed batches with gaps);
* ``buckets``: static buffers per padded length, shared storage;
* ``step``: one Euler step on a bucket, and its CUDA graph;
* ``textembed``: f5's text embedding for many requests at once, each exact;
* ``sampler``: :class:`FastSampler`, which composes them.

CPU tests cover every unit: on the CPU nothing is captured or compiled, but the same step
code runs, padded and packed, so the tests check the arithmetic the GPU graphs replay.
"""

from engine.f5fast.model import ATTENTION_BACKENDS, epss_time_grid
from engine.f5fast.sampler import FastSampler

__all__ = ["ATTENTION_BACKENDS", "FastSampler", "epss_time_grid"]
