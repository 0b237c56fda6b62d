"""Word-contrast loss: reversed captions, the hinge computed by hand, skipped samples, and that it teaches the word."""

from __future__ import annotations

import pytest
import torch

from libragen.models.libraworld import LibraWorldBackbone
from libragen.train.contrast import WordContrastConfig, contrast_prompt, word_contrast_loss
from libragen.train.flow import velocity_errors
from libragen.train.vgfm import VGFMConfig, initial_backbone
from libragen.world.caption import colour_phrases, direction_phrases, reverse_directions
from tests.test_models import tiny_backbone, tiny_config

LEFT = "a red round creature hops quickly to the left on a brick wall."
STILL = "a blue oval creature stays still on snow."


def test_reverse_directions_flips_every_subject_and_the_pan_at_once():
    text = "a red x hops to the left and a blue y glides upward on snow, while the camera pans right."
    assert reverse_directions(text) == (
        "a red x hops to the right and a blue y glides downward on snow, while the camera pans left."
    )
    assert reverse_directions(text, pans=False).endswith("pans right.")
    assert reverse_directions(reverse_directions(text)) == text
    assert reverse_directions(STILL) is None
    assert (
        reverse_directions("a x stays still, while the camera pans up.")
        == "a x stays still, while the camera pans down."
    )
    assert reverse_directions("a x stays still, while the camera pans up.", pans=False) is None


def test_reverse_one_phrase_changes_exactly_one_subject_or_the_pan():
    text = "a red x hops to the left and a blue y glides upward on snow, while the camera pans right."
    assert [m[0] for m in direction_phrases(text)] == ["to the left", "upward", "pans right"]
    seen = set()
    for seed in range(20):
        contrast = contrast_prompt(text, "one", torch.Generator().manual_seed(seed))
        changed = [a for a, b in zip(text.split(), contrast.split(), strict=True) if a != b]
        assert len(changed) == 1
        seen.add(changed[0])
        assert contrast == contrast_prompt(text, "one", torch.Generator().manual_seed(seed))  # reproducible
    assert seen == {"left", "upward", "right."}
    assert (
        contrast_prompt(STILL, "one", torch.Generator()) is None
        and contrast_prompt("", "all", torch.Generator()) is None
    )


def test_colour_contrast_changes_subject_colours_and_keeps_the_articles_right():
    text = "an orange round creature hops to the left and a blue star-shaped creature stays still on a brick wall."
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        every = contrast_prompt(text, "all", generator, ["colour"])
        colours = [m[1] for m in colour_phrases(every)]
        assert len(colours) == 2 and colours[0] != "orange" and colours[1] != "blue"
        assert "to the left" in every and "brick wall" in every  # nothing else changed
        assert all(f"{'an' if c[0] in 'aeiou' else 'a'} {c} " in every for c in colours)
        one = contrast_prompt(text, "one", generator, ["direction", "colour"])
        assert sum(a != b for a, b in zip(text.split(), one.split(), strict=False)) >= 1
        assert len(one.split()) == len(text.split())
    assert contrast_prompt("a cloudy sky.", "all", torch.Generator(), ["colour"]) is None


def batch(backbone, n: int = 3):
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(n, *backbone.latent_shape, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    return clean, noise


def test_contrast_loss_equals_the_hinge_by_hand_and_skips_what_it_should():
    backbone = tiny_backbone()
    clean, noise = batch(backbone)
    t = torch.tensor([0.7, 0.1, 0.5])  # the second sample is below min_t
    prompts = [LEFT, LEFT, STILL]  # the third names no direction
    config = WordContrastConfig(weight=2.0, margin=0.2, min_t=0.3, share=1.0)
    with torch.no_grad():
        true = velocity_errors(backbone, clean, backbone.encode_text(prompts), t, noise)
        loss, logs = word_contrast_loss(backbone, clean, noise, t, prompts, true, config)
        reversed_text = backbone.encode_text([reverse_directions(LEFT)])
        reversed_error = velocity_errors(backbone, clean[:1], reversed_text, t[:1], noise[:1])
    by_hand = 2.0 * torch.relu(0.2 * true[0] - (reversed_error[0] - true[0]))
    torch.testing.assert_close(loss, by_hand)
    assert logs["contrast_samples"] == 1.0
    assert logs["contrast_gap"] == pytest.approx(float((reversed_error[0] - true[0]) / true[0]), rel=1e-5)


def test_contrast_loss_is_zero_without_eligible_samples_and_uses_frame_group_timesteps():
    backbone = tiny_backbone()
    clean, noise = batch(backbone, 2)
    prompts = [STILL, ""]
    true = torch.ones(2)
    loss, logs = word_contrast_loss(
        backbone, clean, noise, torch.tensor([0.9, 0.9]), prompts, true, WordContrastConfig()
    )
    assert float(loss) == 0.0 and logs == {"contrast_samples": 0.0}
    # (B, frame groups) timesteps (Diffusion Forcing): eligibility reads each sample's mean t
    assert backbone.frame_groups == 2
    t = torch.tensor([[0.1, 0.2], [0.9, 0.9]])
    _, logs = word_contrast_loss(backbone, clean, noise, t, [LEFT, LEFT], true, WordContrastConfig(share=1.0))
    assert logs["contrast_samples"] == 1.0


def test_training_with_the_contrast_term_makes_the_prediction_depend_on_the_word():
    """A tiny model, one clip captioned "to the left": the flow loss alone leaves the reversed caption about as
    good as the true one; with the term, the reversed caption's error ends well above the true one's."""
    gaps = {}
    for use_contrast in (False, True):
        backbone = tiny_backbone().train()
        clean, _ = batch(backbone, 1)
        optimizer = torch.optim.Adam(backbone.trainable.parameters(), lr=3e-3)
        config = WordContrastConfig(weight=5.0, margin=0.3, min_t=0.0, share=1.0)
        for step in range(40):
            generator = torch.Generator().manual_seed(step)
            noise = torch.randn(clean.shape, generator=generator)
            t = torch.rand(1, generator=generator) * 0.6 + 0.3
            true = velocity_errors(backbone, clean, backbone.encode_text([LEFT]), t, noise)
            loss = true.mean()
            if use_contrast:
                loss = loss + word_contrast_loss(backbone, clean, noise, t, [LEFT], true, config)[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(999))
            t = torch.tensor([0.6])
            true = velocity_errors(backbone, clean, backbone.encode_text([LEFT]), t, noise)
            flipped = velocity_errors(backbone, clean, backbone.encode_text([reverse_directions(LEFT)]), t, noise)
        gaps[use_contrast] = float((flipped - true) / true)
    assert gaps[True] > 0.1
    assert gaps[True] > gaps[False] + 0.05


def test_init_from_loads_a_saved_backbone_and_refuses_another_design(tmp_path):
    saved = tiny_backbone(seed=3)
    saved.save(tmp_path / "model")
    config = VGFMConfig(data=["unused"], backbone=tiny_config(), init_from=str(tmp_path / "model"))
    started = initial_backbone(config)
    for name, value in saved.trainable.state_dict().items():
        torch.testing.assert_close(started.trainable.state_dict()[name], value)
    other = VGFMConfig(data=["unused"], backbone=tiny_config(one_way=False), init_from=str(tmp_path / "model"))
    with pytest.raises(ValueError, match="backbone config differs"):
        initial_backbone(other)
    assert isinstance(initial_backbone(VGFMConfig(data=["unused"], backbone=tiny_config())), LibraWorldBackbone)


def test_text_cache_keeps_the_most_recently_used_prompts():
    """Contrast negatives are mostly new captions: the encoder's cache stays bounded and its answers unchanged."""
    from libragen.models.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder(max_cached=2)
    first = encoder([LEFT]).tokens
    encoder([STILL])
    encoder([LEFT])  # LEFT is now the most recently used
    encoder([reverse_directions(LEFT)])
    assert list(encoder._cache) == [LEFT, reverse_directions(LEFT)]
    encoder([STILL])  # evicted earlier: encoded again, same features
    assert len(encoder._cache) == 2
    torch.testing.assert_close(encoder([LEFT]).tokens, first)
