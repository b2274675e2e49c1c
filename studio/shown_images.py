"""The Explore tab's images as files the page serves as they are.

Handed a PIL image, Gradio encodes it to PNG at zlib's default level, hashes the bytes and writes them into its
cache, on every answer: at 1024² that is a few hundred milliseconds per image on the request's path. Instead the
tab writes each image once, at the fastest level (``studio.images``), into a folder of its own that Gradio serves
directly (``gr.set_static_paths``), and answers with the file's path. An image shown again (a β change keeps the
baseline; the engine's caches hand back the same image object) costs nothing. The folder keeps the ``keep`` most
recently shown images and deletes the rest, so a long-running server does not fill its disk.

    files = ShownImages()                   # a fresh temporary folder
    gr.set_static_paths([files.folder])
    path = files(panel.image)               # str path; None stays None
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image

from alignment.lru import LRU

from .images import ImageStore


class ShownImages:
    def __init__(self, folder: str | Path | None = None, keep: int = 512):
        if int(keep) < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.store = ImageStore(folder or tempfile.mkdtemp(prefix="studio-shown-"), durable=False)
        self.folder, self.keep = self.store.folder, int(keep)
        # id(image) → (image, file); an entry holds its image, so no other object takes that id while it lives.
        # The LRU's lock makes one image at a time: no file is deleted between another image's write and its entry.
        self._shown = LRU(self.keep, on_evict=self._release)
        self._users: Counter[Path] = Counter()  # one file may hold several equal images

    def __call__(self, image: Image.Image | None) -> str | None:
        if image is None:
            return None
        return str(self._shown.get(id(image), lambda: (image, self._write(image)))[1])

    def _write(self, image: Image.Image) -> Path:
        path = self.store.path(self.store.put(image))
        self._users[path] += 1
        return path

    def _release(self, _key, entry) -> None:
        path = entry[1]
        self._users[path] -= 1
        if self._users[path] == 0:
            del self._users[path]
            path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._shown)
