"""Images stored once, by content: ``<folder>/ab/ab12….png`` where ``ab12…`` is the SHA-256 of the PNG bytes.

The PNG is re-encoded from the pixels alone, so no text chunk, EXIF or ICC profile (nothing that could name the
configuration that made it) is ever written. Files appear atomically (temporary file, fsync, rename): a reader
sees a whole image or none.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_SIDE = 4096
# zlib's fastest level: at 1024² about a fifth of the default level's (6) time for a sixth more bytes on a decoder's
# smooth output (noise does not compress at any level); an Arena pair waits for it (benchmarks/page_images.py)
PNG_LEVEL = 1


def png_bytes(image: Image.Image, level: int = PNG_LEVEL) -> bytes:
    """The image's pixels as a PNG without any metadata (RGB, or RGBA when it has transparency), zlib ``level``."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, not {type(image).__name__}")
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"image size {width}x{height} is outside 1..{MAX_SIDE} pixels a side")
    mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB"
    pixels = Image.fromarray(np.asarray(image.convert(mode)), mode=mode)  # a fresh image: no .info carried over
    buf = io.BytesIO()
    pixels.save(buf, format="PNG", optimize=False, compress_level=level)
    return buf.getvalue()


class ImageStore:
    def __init__(self, folder: str | Path, png_level: int = PNG_LEVEL, durable: bool = True):
        """``durable``: each file is flushed to the disk before it appears (the vote store); off for files that
        only live as long as the server (the Explore tab's)."""
        self.folder, self.png_level, self.durable = Path(folder), png_level, durable

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _HASH.match(sha256):
            raise ValueError(f"{sha256!r} is not an image hash (64 lower-case hex digits)")
        return self.folder / sha256[:2] / f"{sha256}.png"

    def put(self, image: Image.Image) -> str:
        """Store the image (once) and return its hash."""
        data = png_bytes(image, self.png_level)
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600
                f.write(data)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    def get(self, sha256: str) -> Image.Image:
        """The stored image, loaded (no file handle kept open), with no metadata in ``.info``."""
        path = self.path(sha256)
        if not path.exists():
            raise FileNotFoundError(f"image {sha256} is not in {self.folder}")
        with Image.open(path) as image:
            image.load()
            return Image.fromarray(np.asarray(image), mode=image.mode)
