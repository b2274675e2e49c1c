"""What the page's images cost the server outside the model, the way it serves them against the way it did before,
side by side in one run, per image.

* Arena: both store the image first (``ImageStore.put``: PNG, fsync), before at zlib's default level 6, now at
  level 1. Before, the pair then read each image back from the store (decode) and handed Gradio a PIL image, which
  it encoded to PNG again, hashed and wrote into its cache; now Gradio serves the stored file as it is
  (``gr.set_static_paths`` on the store's folder).
* Explore: before, Gradio encoded every image it was handed (level 6), hashed it and wrote it into its cache; now
  the tab writes it once at level 1, without fsync, into a folder Gradio serves as it is (``studio.shown_images``).

Images: a smooth one (what the toy models and most photographs are like) and noise (what random-weight full-size
models make), at the toy size, SDXL-Turbo's 512² and SD3.5's 1024².

    python -m benchmarks.page_images            # prints a table, writes benchmarks/results/page_images.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"


def images(side: int, rng: np.random.Generator) -> dict[str, Image.Image]:
    x = np.linspace(0, 1, side, dtype=np.float32)
    smooth = np.stack([np.outer(x, 1 - x), np.outer(1 - x, x), np.outer(x, x)], -1) * 255
    smooth += rng.normal(0, 2, smooth.shape)  # a little grain, as a decoder leaves
    noise = rng.integers(0, 256, (side, side, 3))
    return {kind: Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)) for kind, a in (("smooth", smooth),
                                                                                      ("noise", noise))}


def measure(sides: list[int], repeats: int) -> list[dict]:
    from gradio import processing_utils

    from studio.images import ImageStore
    from studio.shown_images import ShownImages

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cache = str(Path(folder) / "gradio-cache")
        stores = {True: ImageStore(Path(folder) / "before", png_level=6), False: ImageStore(Path(folder) / "now")}
        shown = ShownImages(Path(folder) / "shown", keep=10_000)

        def arena(image, old):
            sha = stores[old].put(image)
            if old:
                processing_utils.save_pil_to_cache(stores[old].get(sha), cache, format="png")

        def explore(image, old):
            if old:
                processing_utils.save_pil_to_cache(image, cache, format="png")
            else:
                shown(image)

        for side in sides:
            for kind, image in images(side, rng).items():
                for page, path in (("arena", arena), ("explore", explore)):
                    before, now = [], []
                    for r in range(repeats):  # alternating, a fresh image each time (the stores skip known ones)
                        pixels = np.asarray(image).copy()
                        pixels[0, 0] = (r * 7 % 256, r % 256, len(rows) % 256)
                        for times, old in ((before, True), (now, False)):
                            pixels[0, 1] = (int(old), 0, 0)
                            fresh = Image.fromarray(pixels)
                            start = time.perf_counter()
                            path(fresh, old)
                            times.append(time.perf_counter() - start)
                    b, n = statistics.median(before) * 1e3, statistics.median(now) * 1e3
                    rows.append({"page": page, "side": side, "image": kind, "before_ms": round(b, 2),
                                 "now_ms": round(n, 2), "saved_ms": round(b - n, 2), "before_over_now": round(b / n, 2)})
                    print(f"{page:8s}{side:5d}² {kind:6s}  before {b:7.1f} ms   now {n:7.1f} ms   {b / n:5.2f}×",
                          flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 512, 1024])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "page_images.json")
    args = parser.parse_args(argv)
    rows = measure(args.sides, args.repeats)
    report = {"command": "python -m benchmarks.page_images " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
              "per_image": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
