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
import threading
from collections import Counter, OrderedDict
from pathlib import Path

from PIL import Image

from .images import ImageStore


class ShownImages:
    def __init__(self, folder: str | Path | None = None, keep: int = 512):
        if int(keep) < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.store = ImageStore(folder or tempfile.mkdtemp(prefix="studio-shown-"), durable=False)
        self.folder, self.keep = self.store.folder, int(keep)
        self._lock = threading.Lock()
        self._shown: OrderedDict[int, tuple[Image.Image, Path]] = OrderedDict()  # id(image) → (image, file)
        self._users: Counter[Path] = Counter()  # one file may hold several equal images

    def __call__(self, image: Image.Image | None) -> str | None:
        if image is None:
            return None
        with self._lock:  # one at a time: a file is never deleted between another image's write and its entry
            # the entry holds the image itself, so no other object can take its id while the entry lives
            entry = self._shown.get(id(image))
            if entry is not None and entry[0] is image:
                self._shown.move_to_end(id(image))
                return str(entry[1])
            path = self.store.path(self.store.put(image))
            self._shown[id(image)] = (image, path)
            self._users[path] += 1
            while len(self._shown) > self.keep:
                _, (_, old) = self._shown.popitem(last=False)
                self._users[old] -= 1
                if self._users[old] == 0:
                    del self._users[old]
                    old.unlink(missing_ok=True)
            return str(path)

    def __len__(self) -> int:
        return len(self._shown)
