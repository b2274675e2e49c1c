"""training/guidance_data.py's encode_rows: what a batch caches equals encoding each image on its own."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from alignment import load_pipeline
from alignment.rewards import load_reward
from training.guidance_data import _pixels, encode_rows


@pytest.fixture(scope="module")
def toy():
    pipe, _ = load_pipeline("toy-sdxl", device="cpu")
    return pipe, load_reward("toy-pickscore")


def _row(caption, seed, size=64):
    rng = np.random.default_rng(seed)
    image = lambda: Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))  # noqa: E731
    return SimpleNamespace(caption=caption, image_0=image(), image_1=image(), label_0=1.0, label_1=0.0,
                           model_0="a", model_1="b")


def test_a_batch_caches_what_each_image_alone_would(toy):
    """Captions shared by a pair are encoded once, the reward reads the device's pixels: the same numbers as one
    image at a time from its PIL image, in any batch size."""
    pipe, reward = toy
    rows = [_row("a red star on a blue background", 0), _row("a small green circle on a white background", 1),
            _row("a red star on a blue background", 2)]
    together = encode_rows(pipe, reward, rows, (), batch=4)
    alone = encode_rows(pipe, reward, rows, (), batch=1)
    for key in ("latents", "prompt_embeds", "text_embeds", "rewards", "preferred"):
        assert torch.allclose(together[key].float(), alone[key].float(), atol=2e-3), key
    images = [im for r in rows for im in (r.image_0, r.image_1)]
    captions = [r.caption for r in rows for _ in range(2)]
    assert torch.allclose(together["rewards"], reward.score(images, captions).float(), atol=1e-4)
    assert together["preferred"].tolist() == [True, False] * 3


def test_images_of_another_size_are_fitted_to_the_model_resolution(toy):
    pipe, reward = toy
    rows = [_row("a red star on a blue background", 0), _row("a blue square on a yellow background", 1, size=96)]
    data = encode_rows(pipe, reward, rows, (), batch=4)
    assert data["latents"].shape == (4, 4, 16, 16)
    wide = Image.fromarray(np.zeros((64, 128, 3), dtype=np.uint8))
    assert _pixels([wide], 64).shape == (1, 64, 64, 3)


def test_prefetched_keeps_order_and_raises_where_the_item_would_have_come():
    from training.guidance_data import prefetched

    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise ValueError("row 2 is unreadable")

    got = prefetched(broken())
    assert next(got) == 1
    with pytest.raises(ValueError, match="row 2"):
        next(got)
