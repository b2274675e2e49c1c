"""The toy world: renderer, caption grammar, held-out split and the oracle that defines the hidden taste.

Fast, offline, deterministic: every random draw comes from a fixed seed.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from toyworld import (
    COLOURS,
    HELD_OUT,
    SHAPES,
    Scene,
    ToyScenes,
    analyse,
    caption_for,
    is_held_out,
    parse_caption,
    render,
    sample_captions,
    sample_scene,
    taste,
)
from toyworld.captions import position_cell, size_class

ALL_TRIPLES = [(c, s, b) for c, s, b in itertools.product(COLOURS, SHAPES, COLOURS) if c != b]


def _train_scenes_and_captions(n: int, seed: int, allow_wrong: bool = True):
    """``n`` (scene, caption) pairs drawn exactly as ToyScenes does for the train split."""
    data = ToyScenes(n, seed=seed, split="train")
    out = []
    for i in range(n):
        scene, rng = data.scene(i)
        out.append((scene, caption_for(scene, rng, allow_wrong=allow_wrong)))
    return out


@pytest.fixture(scope="module")
def train_pairs():
    return _train_scenes_and_captions(3000, seed=11)


# --------------------------------------------------------------------------------------------------------------
# Oracle accuracy (acceptance target of the issue: >= 98 % colour and shape on clean renders)
# --------------------------------------------------------------------------------------------------------------


def test_oracle_reads_clean_renders():
    n = 1000
    colour_ok = shape_ok = background_ok = found = 0
    for i in range(n):
        scene = sample_scene(np.random.default_rng((0, i)), split="all", clean=True)
        reading = analyse(render(scene))
        found += reading.found
        colour_ok += reading.colour == scene.colour
        shape_ok += reading.shape == scene.shape
        background_ok += reading.background == scene.background
    assert found == n
    assert colour_ok / n >= 0.98, f"colour accuracy {colour_ok / n:.3f}"
    assert shape_ok / n >= 0.98, f"shape accuracy {shape_ok / n:.3f}"
    assert background_ok / n >= 0.98, f"background accuracy {background_ok / n:.3f}"


# --------------------------------------------------------------------------------------------------------------
# Determinism and variety of the renderer
# --------------------------------------------------------------------------------------------------------------


def test_toyscenes_item_is_deterministic():
    a, b = ToyScenes(8, seed=3), ToyScenes(8, seed=3)
    for i in range(8):
        x, y = a[i], b[i]
        assert x["image"].dtype == np.uint8 and x["image"].shape == (64, 64, 3)
        assert x["image"].tobytes() == y["image"].tobytes()
        assert x["caption"] == y["caption"]
        again = a[i]  # the same object, asked twice
        assert again["image"].tobytes() == x["image"].tobytes() and again["caption"] == x["caption"]


def test_different_seeds_give_different_items():
    a, b = ToyScenes(8, seed=3), ToyScenes(8, seed=4)
    differing_images = sum(a[i]["image"].tobytes() != b[i]["image"].tobytes() for i in range(8))
    differing_captions = sum(a[i]["caption"] != b[i]["caption"] for i in range(8))
    assert differing_images == 8
    assert differing_captions >= 6
    # Different indices of one seed differ too.
    assert len({a[i]["image"].tobytes() for i in range(8)}) == 8


def test_toyscenes_index_out_of_range():
    data = ToyScenes(4, seed=0)
    assert len(data) == 4
    with pytest.raises(IndexError):
        data[4]
    with pytest.raises(IndexError):
        data[-1]


def test_render_is_a_pure_function_of_the_scene():
    scene = sample_scene(np.random.default_rng(123))
    assert render(scene).tobytes() == render(scene).tobytes()
    # The noise pattern comes from the scene's noise_seed, not from global state.
    noisy = dataclasses.replace(scene, noise=0.05, noise_seed=7)
    np.random.seed(1)
    first = render(noisy)
    np.random.seed(2)
    assert first.tobytes() == render(noisy).tobytes()
    assert render(dataclasses.replace(noisy, noise_seed=8)).tobytes() != first.tobytes()


def test_scene_attributes_vary_widely():
    scenes = [sample_scene(np.random.default_rng((5, i))) for i in range(400)]

    def values(name):
        return np.array([getattr(s, name) for s in scenes])

    radius, cx, cy = values("radius"), values("cx"), values("cy")
    assert radius.min() < 8 and radius.max() > 22
    assert (radius < 10).mean() > 0.1 and (radius > 19).mean() > 0.1  # both size words get used
    assert cx.min() < 16 and cx.max() > 48 and cy.min() < 16 and cy.max() > 48
    # The object always lies inside the image.
    assert np.all(cx - radius >= 0) and np.all(cx + radius <= 64)
    assert np.all(cy - radius >= 0) and np.all(cy + radius <= 64)
    rotation = values("rotation")
    assert rotation.min() < 0.5 and rotation.max() > 2 * np.pi - 0.5
    contrast = values("contrast")
    assert contrast.min() < 0.55 and contrast.max() > 0.95
    blur = values("blur")
    assert (blur == 0).mean() > 0.2 and (blur > 1.5).any()
    noise = values("noise")
    assert (noise == 0).mean() > 0.2 and (noise > 0.08).any()
    assert len({s.shape for s in scenes}) >= 6
    assert len({s.colour for s in scenes}) >= 8
    assert len({s.background for s in scenes}) >= 8
    assert all(s.colour != s.background for s in scenes)


def test_clean_scenes_have_no_blur_or_noise():
    scenes = [sample_scene(np.random.default_rng((6, i)), clean=True) for i in range(100)]
    assert all(s.blur == 0 and s.noise == 0 for s in scenes)


def test_unknown_split_raises():
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), split="test")


# --------------------------------------------------------------------------------------------------------------
# Caption grammar
# --------------------------------------------------------------------------------------------------------------


def test_wrong_colour_rate_is_a_few_percent(train_pairs):
    wrong = [(s, c) for s, c in train_pairs if parse_caption(c).colour != s.colour]
    rate = len(wrong) / len(train_pairs)
    assert 0.02 <= rate <= 0.06, f"wrong-colour rate {rate:.3f}"
    for scene, caption in wrong:
        attrs = parse_caption(caption)
        assert attrs.colour in COLOURS
        assert attrs.colour != scene.background  # a wrong word never names the background colour
        assert attrs.shape == scene.shape and attrs.background == scene.background


def test_size_and_position_words_are_true(train_pairs):
    with_size = {"small": 0, "large": 0}
    with_position = 0
    for scene, caption in train_pairs:
        attrs = parse_caption(caption)
        if attrs.size is not None:
            # Size words only for small or large radii, and the right one.
            assert size_class(scene.radius) == attrs.size, (caption, scene.radius)
            with_size[attrs.size] += 1
        if attrs.position is not None:
            assert attrs.position == position_cell(scene.cx, scene.cy), (caption, scene.cx, scene.cy)
            with_position += 1
    assert with_size["small"] > 50 and with_size["large"] > 50
    assert 0.2 < with_position / len(train_pairs) < 0.5


def test_mid_sized_objects_get_no_size_word():
    scene = Scene("red", "star", "blue", radius=14.0, cx=32, cy=32, rotation=0.0, contrast=1.0, blur=0.0, noise=0.0)
    for i in range(200):
        assert parse_caption(caption_for(scene, np.random.default_rng(i))).size is None


def test_parse_caption_round_trips():
    pairs = _train_scenes_and_captions(1000, seed=12, allow_wrong=False)
    for scene, caption in pairs:
        attrs = parse_caption(caption)
        assert (attrs.colour, attrs.shape, attrs.background) == (scene.colour, scene.shape, scene.background), caption


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", (None, None, None)),
        ("hello", (None, None, None)),
        ("A RED STAR on a BLUE background", ("red", "star", "blue")),
        ("blue background, a red star", ("red", "star", "blue")),
        ("two green circles", ("green", "circle", None)),
        ("a photo of a dog!!! 123 ???", (None, None, None)),
        ("a yellow ring on a black backdrop in the top left", ("yellow", "ring", "black")),
    ],
)
def test_parse_caption_on_arbitrary_text(text, expected):
    attrs = parse_caption(text)
    assert (attrs.colour, attrs.shape, attrs.background) == expected


def test_parse_caption_reads_size_and_position():
    attrs = parse_caption("a tiny red star on a blue background in the top left")
    assert attrs.size == "small" and attrs.position == (0, 0)
    attrs = parse_caption("huge cyan cross, white background in the center")
    assert attrs.size == "large" and attrs.position == (1, 1)


# --------------------------------------------------------------------------------------------------------------
# Held-out split
# --------------------------------------------------------------------------------------------------------------


def test_held_out_is_about_a_tenth_of_all_triples():
    assert len(ALL_TRIPLES) == 10 * 6 * 9
    assert HELD_OUT <= set(ALL_TRIPLES)
    assert 0.08 <= len(HELD_OUT) / len(ALL_TRIPLES) <= 0.12
    for triple in HELD_OUT:
        assert is_held_out(*triple)


def test_held_out_triples_are_compositions_of_seen_pairs():
    train = [t for t in ALL_TRIPLES if t not in HELD_OUT]
    colour_shape = {(c, s) for c, s, _ in train}
    colour_bg = {(c, b) for c, _, b in train}
    shape_bg = {(s, b) for _, s, b in train}
    for c, s, b in HELD_OUT:
        assert (c, s) in colour_shape and (c, b) in colour_bg and (s, b) in shape_bg


def test_train_split_never_names_a_held_out_triple(train_pairs):
    for scene, caption in train_pairs:
        assert not is_held_out(scene.colour, scene.shape, scene.background)
        attrs = parse_caption(caption)
        assert not is_held_out(attrs.colour, attrs.shape, attrs.background), caption
    # The train split still covers (nearly) every allowed triple.
    seen = {(s.colour, s.shape, s.background) for s, _ in train_pairs}
    assert len(seen) >= 0.95 * (len(ALL_TRIPLES) - len(HELD_OUT))


def test_all_split_includes_held_out_triples():
    scenes = [sample_scene(np.random.default_rng((7, i)), split="all") for i in range(500)]
    assert any(is_held_out(s.colour, s.shape, s.background) for s in scenes)


def test_heldout_split_scenes_are_all_held_out():
    scenes = [sample_scene(np.random.default_rng((8, i)), split="heldout") for i in range(300)]
    assert all(is_held_out(s.colour, s.shape, s.background) for s in scenes)
    assert len({(s.colour, s.shape, s.background) for s in scenes}) >= 0.8 * len(HELD_OUT)


def test_heldout_captions_parse_to_held_out_triples():
    captions = sample_captions(200, split="heldout")
    assert len(captions) == 200
    for caption in captions:
        attrs = parse_caption(caption)
        assert is_held_out(attrs.colour, attrs.shape, attrs.background), caption
    assert sample_captions(20, split="heldout") == captions[:20]  # deterministic


# --------------------------------------------------------------------------------------------------------------
# Taste (the hidden preference)
# --------------------------------------------------------------------------------------------------------------

CAPTION = "a red star on a blue background"
GOOD = Scene("red", "star", "blue", radius=22.0, cx=32.0, cy=32.0, rotation=0.3, contrast=1.0, blur=0.0, noise=0.0)


def test_good_render_beats_bad_render_of_the_same_caption():
    bad = dataclasses.replace(GOOD, radius=7.0, cx=12.0, cy=50.0, blur=2.0, noise=0.1, contrast=0.5, noise_seed=3)
    good_taste, bad_taste = taste(render(GOOD), CAPTION), taste(render(bad), CAPTION)
    assert good_taste.prompt_fidelity and good_taste.fidelity == 1.0
    assert good_taste.score > bad_taste.score + 1.0
    assert good_taste.aesthetic > bad_taste.aesthetic
    for t in (good_taste, bad_taste):
        assert 0.0 <= t.score <= 10.0 and 0.0 <= t.aesthetic <= 1.0 and 0.0 <= t.fidelity <= 1.0


@pytest.mark.parametrize(
    "change",
    [
        dict(radius=8.0),
        dict(cx=16.0, cy=46.0, radius=14.0),
        dict(blur=1.5),
        dict(noise=0.08, noise_seed=1),
        dict(contrast=0.5),
    ],
    ids=["smaller", "off-centre", "blurred", "noisy", "low-contrast"],
)
def test_each_aesthetic_flaw_lowers_the_aesthetic(change):
    good = taste(render(GOOD), CAPTION)
    worse = taste(render(dataclasses.replace(GOOD, **change)), CAPTION)
    assert worse.prompt_fidelity  # still the right object
    assert worse.aesthetic < good.aesthetic
    assert worse.score < good.score


@pytest.mark.parametrize(
    "change, colour_ok, shape_ok",
    [
        (dict(shape="square"), True, False),
        (dict(colour="yellow"), False, True),
        (dict(colour="green", shape="circle"), False, False),
    ],
)
def test_wrong_object_fails_prompt_fidelity(change, colour_ok, shape_ok):
    good = taste(render(GOOD), CAPTION)
    wrong = taste(render(dataclasses.replace(GOOD, **change)), CAPTION)
    assert wrong.colour_ok is colour_ok and wrong.shape_ok is shape_ok
    assert wrong.prompt_fidelity is False
    assert wrong.fidelity < 1.0
    assert wrong.score < good.score
    assert 0.0 <= wrong.score <= 10.0


def test_taste_scores_lie_in_range_over_random_scenes():
    for scene, caption in _train_scenes_and_captions(60, seed=13):
        t = taste(render(scene), caption)
        assert 0.0 <= t.score <= 10.0
        assert 0.0 <= t.fidelity <= 1.0 and 0.0 <= t.aesthetic <= 1.0


def test_taste_accepts_parsed_attributes_and_pil_images():
    from toyworld import render_pil

    by_text = taste(render(GOOD), CAPTION)
    by_attrs = taste(render_pil(GOOD), parse_caption(CAPTION))
    assert by_attrs.score == pytest.approx(by_text.score)


# --------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(64, 64), (64, 64, 4), (64, 64, 1), (3, 64, 64), (64,)], ids=["gray", "rgba", "1ch", "chw", "1d"]
)
def test_analyse_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError):
        analyse(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize(
    "image",
    [np.full((64, 64, 3), 128, dtype=np.uint8), np.full((64, 64, 3), 0.3), np.zeros((64, 64, 3), dtype=np.uint8)],
    ids=["uint8-grey", "float-grey", "black"],
)
def test_flat_image_has_no_object(image):
    reading = analyse(image)
    assert reading.found is False
    assert reading.colour is None and reading.shape is None
    assert reading.background in COLOURS
    t = taste(image, CAPTION)
    assert t.prompt_fidelity is False and t.aesthetic == 0.0
    assert 0.0 <= t.score <= 10.0


def test_noise_estimate_ignores_sharp_edges():
    import dataclasses

    scene = dataclasses.replace(sample_scene(np.random.default_rng(1), clean=True), shape="star", radius=22.0,
                                cx=32.0, cy=32.0)
    assert analyse(render(scene)).noise < 0.005
    noisy = analyse(render(dataclasses.replace(scene, noise=0.08))).noise
    assert 0.06 < noisy < 0.10


def test_float_images_outside_unit_range_are_refused():
    image = render(sample_scene(np.random.default_rng(2), clean=True)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        analyse(image)
    assert analyse(image / 255.0).found
