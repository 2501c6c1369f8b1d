"""One Euler step on a bucket equals one step of f5's own DiT, the CFG mix and the update.

This is the function the CUDA graphs capture and replay; on the CPU it runs eagerly, padded,
unpadded and packed, so its arithmetic is checked here against ``DiT.forward(cfg_infer=True)``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.f5fast.buckets import Bucket
from engine.f5fast.layout import GAP, Packing, pack
from engine.f5fast.model import prepare_schedule
from engine.f5fast.sampler import FastSampler
from engine.f5fast.step import capture, euler_step, run_steps
from engine.sampling import SampleRequest
from tests.engine.f5fast.common import REF_FRAMES, TEXT, ids, make, noise_for, reference, rel
from tests.support.f5 import N_MEL


def _stock_step(model: Any, request: SampleRequest, step: int) -> torch.Tensor:
    """x after one Euler step from the request's noise at time step ``step``, f5's own way."""
    schedule = prepare_schedule(model, 16, -1.0)
    frames = request.duration
    x = request.noise.reshape(1, frames, N_MEL)  # type: ignore[union-attr]
    step_cond = torch.zeros(1, frames, N_MEL)
    step_cond[:, : request.cond.shape[1]] = request.cond
    with torch.inference_mode():
        out = model.transformer(
            x=x,
            cond=step_cond,
            text=request.text_ids,
            time=schedule.t[step],
            mask=None,
            cfg_infer=True,
            cache=False,
        )
    pred, null_pred = out.chunk(2)
    return x + schedule.dt[step] * (pred + (pred - null_pred) * 2.0)


def _filled(sampler: FastSampler, requests: list[SampleRequest], bucket: Bucket) -> Packing:
    jobs = [sampler._job(r) for r in requests]
    packing = pack([job.frames for job in jobs], bucket.frames)
    sampler._fill(bucket, packing, jobs)
    return packing


def _request(text: str, frames: int, seed: int) -> SampleRequest:
    return SampleRequest(reference(seed, REF_FRAMES), ids(text), frames, noise_for(frames, seed))


@pytest.mark.parametrize("bucket_frames", [0, 32])
def test_one_step_equals_f5s_dit_step(model: Any, bucket_frames: int) -> None:
    request = _request(TEXT, 130, 1)
    want = _stock_step(model, request, 3)
    sampler = make(model, bucket_frames=bucket_frames)
    store, schedule, step_model = sampler.store, sampler._schedule, sampler._model
    assert schedule is not None
    assert step_model is not None
    bucket = store.single(130)
    assert bucket.padded == bool(bucket_frames)
    _filled(sampler, [request], bucket)
    with torch.inference_mode():
        euler_step(step_model, bucket, schedule.mods[3], schedule.final[3], schedule.dt[3])
    assert rel(bucket.x[:, :130], want) < 1e-5


def test_a_packed_step_equals_each_requests_own_step(model: Any) -> None:
    requests = [_request(TEXT, 130, 1), _request("hello there", 70, 2), _request("ok", 60, 3)]
    sampler = make(model, bucket_frames=32, max_batch=4)
    store, schedule, step_model = sampler.store, sampler._schedule, sampler._model
    assert schedule is not None
    assert step_model is not None
    bucket = store.batch(sum(r.duration for r in requests) + 2 * GAP)
    packing = _filled(sampler, requests, bucket)
    with torch.inference_mode():
        euler_step(step_model, bucket, schedule.mods[0], schedule.final[0], schedule.dt[0])
    for request, offset in zip(requests, packing.offsets, strict=True):
        want = _stock_step(model, request, 0)
        got = bucket.x[:, offset : offset + request.duration]
        assert rel(got, want) < 1e-5


def test_run_steps_without_a_graph_is_every_step_in_turn(model: Any) -> None:
    request = _request(TEXT, 100, 4)
    sampler = make(model, bucket_frames=32)
    store, schedule, step_model = sampler.store, sampler._schedule, sampler._model
    assert schedule is not None
    assert step_model is not None
    bucket = store.single(100)
    _filled(sampler, [request], bucket)
    start = bucket.x.clone()
    with torch.inference_mode():
        run_steps(step_model, bucket, schedule, (store.step.mods, store.step.final, store.step.dt))
        together = bucket.x.clone()
        bucket.x.copy_(start)
        for i in range(schedule.dt.shape[0]):
            euler_step(step_model, bucket, schedule.mods[i], schedule.final[i], schedule.dt[i])
    assert bucket.graph is None
    assert torch.equal(together, bucket.x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("whole_loop", [False, True])
def test_a_captured_step_replays_what_the_eager_step_computes(whole_loop: bool) -> None:
    from tests.support.f5 import tiny_cfm

    model = tiny_cfm().cuda()
    request = _request(TEXT, 130, 5)
    request = SampleRequest(request.cond.cuda(), request.text_ids, 130, request.noise.cuda())  # type: ignore[union-attr]
    sampler = make(model, bucket_frames=32, compile=False, cuda_graphs=False)
    store, schedule, step_model = sampler.store, sampler._schedule, sampler._model
    assert schedule is not None
    assert step_model is not None
    bucket = store.single(130)
    _filled(sampler, [request], bucket)
    inputs = (store.step.mods, store.step.final, store.step.dt)
    with torch.inference_mode():
        run_steps(step_model, bucket, schedule, inputs)
        eager = bucket.x.clone()
        _filled(sampler, [request], bucket)
        capture(step_model, bucket, schedule, inputs, None, whole_loop=whole_loop)
        run_steps(step_model, bucket, schedule, inputs)
    assert rel(bucket.x, eager) < 1e-5
