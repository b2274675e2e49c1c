"""The Explore tab's image files (studio/shown_images.py): written once per image, named by content, pruned to the
most recent ``keep``, a file shared by equal images kept while any of them is."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from studio.shown_images import ShownImages


def image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def test_an_image_becomes_one_file_named_by_its_content(tmp_path):
    files = ShownImages(tmp_path, keep=4)
    first = image(10)
    path = files(first)
    data = open(path, "rb").read()
    assert path.endswith(f"{hashlib.sha256(data).hexdigest()}.png") and path.startswith(str(tmp_path))
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(first))
    assert files(first) == path and len(files) == 1  # shown again: the same file, nothing written
    assert files(None) is None


def test_only_the_most_recent_images_keep_their_files(tmp_path):
    files = ShownImages(tmp_path, keep=2)
    a, b, c = image(1), image(2), image(3)
    pa, pb = files(a), files(b)
    files(a)  # a is now the most recent
    pc = files(c)  # b goes
    assert len(files) == 2 and {str(p) for p in tmp_path.rglob("*.png")} == {pa, pc} and pb not in {pa, pc}


def test_a_file_shared_by_equal_images_stays_while_one_of_them_is_shown(tmp_path):
    files = ShownImages(tmp_path, keep=2)
    one, same = image(7), image(7)
    assert files(one) == files(same)
    files(image(8))  # `one` goes; `same` still shows the file
    assert len(list(tmp_path.rglob("*.png"))) == 2
    files(image(9))  # now `same` goes too
    assert len(list(tmp_path.rglob("*.png"))) == 2 and len(files) == 2


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        ShownImages(tmp_path, keep=0)
