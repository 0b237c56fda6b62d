"""Time-dependent three-branch guidance: schedules, branch skipping, and the batched sampler vs the naive loop."""

from __future__ import annotations

import math

import pytest
import torch

from libragen.infer.guidance import FULL, REFS, UNCOND, DynamicCFG, ScheduleError, parse_schedule
from libragen.infer.sampler import sample
from tests.test_models import PROMPTS, inputs, tiny_backbone


def test_schedules_read_as_documented():
    assert parse_schedule("5")(0.3) == 5.0
    linear = parse_schedule("linear:7.5:3")
    assert linear(1.0) == 7.5 and linear(0.0) == 3.0 and linear(0.5) == pytest.approx(5.25)
    cosine = parse_schedule("cosine:8:2")
    assert cosine(1.0) == pytest.approx(8) and cosine(0.0) == pytest.approx(2) and cosine(0.5) == pytest.approx(5)
    interval = parse_schedule("interval:5:0.4:1")
    assert interval(0.7) == 5.0 and interval(0.2) == 1.0
    knots = parse_schedule("0:7.5,0.6:5,1:3")
    assert knots(0.0) == 7.5 and knots(0.6) == 5.0 and knots(1.0) == 3.0
    assert knots(0.3) == pytest.approx(6.25) and knots(0.8) == pytest.approx(4.0)
    assert parse_schedule("0.5:2")(0.1) == 2.0 and parse_schedule("linear:1:0")(7.0) == 1.0  # t is clamped


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty schedule"),
        ("strong", "not a number"),
        ("nan", "not finite"),
        ("linear:7", "two values"),
        ("interval:5:0.8:0.2", "low <= high"),
        ("0:1,0:2", "same t"),
        ("0:1,2:3", "outside [0, 1]"),
        ("0:1,0.5", "t:scale"),
        ("sigmoid:1:2", "unknown schedule kind"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, message):
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_schedule(text)


def test_combine_is_the_three_branch_formula_and_zero_weight_branches_are_skipped():
    guidance = DynamicCFG(parse_schedule("linear:6:2"), parse_schedule("0:7.5,1:3"))
    v = {branch: torch.randn(2, 3) for branch in (UNCOND, REFS, FULL)}
    for t in (1.0, 0.7, 0.2, 0.0):
        s_ref, s_txt = guidance.ref_scale(t), guidance.text_scale(t)
        naive = v[UNCOND] + s_ref * (v[REFS] - v[UNCOND]) + s_txt * (v[FULL] - v[REFS])
        assert torch.allclose(guidance.combine(t, v), naive, atol=1e-6)
        assert guidance.branches_at(t) == (UNCOND, REFS, FULL)
    one = parse_schedule("1")
    assert DynamicCFG(one, parse_schedule("4")).branches_at(0.5) == (REFS, FULL)  # s_ref = 1: v(∅,∅) cancels
    assert DynamicCFG(parse_schedule("3"), parse_schedule("3")).branches_at(0.5) == (UNCOND, FULL)
    assert DynamicCFG(parse_schedule("3"), parse_schedule("0")).branches_at(0.5) == (UNCOND, REFS)
    assert DynamicCFG(one, one).branches_at(0.5) == (FULL,)


def _counting(backbone):
    calls = {"forwards": 0, "rows": 0}
    original = backbone.predict_velocity

    def counted(latents, *args, **kwargs):
        calls["forwards"] += 1
        calls["rows"] += latents.shape[0]
        return original(latents, *args, **kwargs)

    backbone.predict_velocity = counted
    return calls


def test_batched_sampler_equals_the_naive_loop_and_skips_branches():
    backbone = tiny_backbone()
    _, _, _, refs = inputs(backbone)
    everything = DynamicCFG(parse_schedule("linear:5:2"), parse_schedule("cosine:6:3"))
    kwargs = {"refs": refs, "steps": 4, "guidance": everything, "seed": [3, 4]}
    naive_calls = _counting(backbone)
    naive = sample(backbone, PROMPTS, batch_branches=False, **kwargs)
    assert naive_calls == {"forwards": 12, "rows": 24}  # 4 steps x 3 branches, one forward each
    backbone = tiny_backbone()
    fast_calls = _counting(backbone)
    fast = sample(backbone, PROMPTS, **kwargs)
    assert fast_calls == {"forwards": 4, "rows": 24}  # one forward per step
    assert torch.allclose(fast, naive, atol=1e-5)
    # reference guidance only early (t >= 0.5), then s_ref = 1: the later steps need two branches
    early = DynamicCFG(parse_schedule("interval:4:0.5:1"), parse_schedule("5"))
    backbone = tiny_backbone()
    calls = _counting(backbone)
    skipped = sample(backbone, PROMPTS, **(kwargs | {"guidance": early}))
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=backbone.sampling_shift)
    scheduler.set_timesteps(4)
    sigmas = scheduler.sigmas[:-1].tolist()
    assert any(s < 0.5 for s in sigmas) and any(s >= 0.5 for s in sigmas)
    expected_rows = sum(3 if s >= 0.5 else 2 for s in sigmas) * 2
    assert calls["rows"] == expected_rows and math.isfinite(float(skipped.abs().sum()))


def test_default_guidance_depends_on_references_and_what_was_given():
    from libragen.infer.guidance import DEFAULT_REF_SCALE, DEFAULT_TEXT_SCALE
    from libragen.infer.pipeline import InvalidInput, make_guidance
    from libragen.infer.sampler import Guidance, TextCFG

    default = make_guidance(with_refs=True)  # references, nothing else: the measured three-branch schedules
    assert isinstance(default, DynamicCFG)
    assert (default.ref_scale.text, default.text_scale.text) == (DEFAULT_REF_SCALE, DEFAULT_TEXT_SCALE)
    # the measured default costs what two-pass CFG costs: v(∅,∅) and v(T,R) at every step
    assert all(len(default.branches_at(t)) == 2 for t in (0.95, 0.5, 0.05))
    assert make_guidance() == TextCFG(4.0)  # text only
    assert make_guidance(6.0, with_refs=True) == TextCFG(6.0)  # a scale given: plain text CFG at that scale
    assert type(make_guidance(0.0)) is Guidance
    mixed = make_guidance(5.0, ref_scale="2", with_refs=True)
    assert mixed.ref_scale(0.5) == 2.0 and mixed.text_scale(0.5) == 5.0
    with pytest.raises(InvalidInput, match="linear takes two values"):
        make_guidance(ref_scale="linear:1")
