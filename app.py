"""Gradio entry point (Hugging Face Spaces app_file): builds the studio and serves it, nothing else.

    python app.py                                   # toy presets on CPU, offline, http://127.0.0.1:7860
    python app.py --real --device cuda              # add sdxl-turbo and sd3.5-large-turbo (hub), on the GPU
    STUDIO_MODELS=./my-sdxl-folder python app.py    # any preset, hub id or local diffusers folder

Environment: STUDIO_MODELS, STUDIO_REAL=1, STUDIO_DEVICE, STUDIO_REWARD, STUDIO_GUIDANCE, STUDIO_MAX_N,
STUDIO_TORCH_THREADS (studio/engine.py); STUDIO_DATABASE_URL, STUDIO_DATA_DIR, vote caps (studio/store.py);
STUDIO_ADMIN_TOKEN (exports); STUDIO_HUB_DATASET, STUDIO_HUB_EVERY, STUDIO_HUB_IMAGES (votes kept in a hub dataset,
studio/hub_sync.py). On Spaces the database lives under /data when that folder exists, and generation runs under
``spaces.GPU`` when the ``spaces`` package is installed.
"""

from __future__ import annotations

import argparse
import logging
import os

try:  # Hugging Face ZeroGPU: `spaces` is imported before torch initialises CUDA
    import spaces  # noqa: F401
except ImportError:
    pass


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the alignment studio.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 to serve the network; Spaces sets GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--real", action="store_true", help="add the real hub models (sdxl-turbo, sd3.5-large-turbo)")
    parser.add_argument("--models", default="", help="comma-separated extra models: presets, hub ids or folders")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps… (default: CPU for the toy presets alone)")
    parser.add_argument("--no-warm-up", action="store_true", help="load models on the first click, not at start")
    parser.add_argument("--no-compile", action="store_true",
                        help="never compile the models (default: compiled at start-up on CUDA; STUDIO_COMPILE)")
    parser.add_argument("--fp8", action="store_true",
                        help="FP8 matmuls in the compiled bf16 models' transformer blocks (torchao; Ada or Hopper GPU; "
                             "STUDIO_FP8=1)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("studio").setLevel(logging.INFO)  # the vote store's and the hub sync's messages
    from studio.settings import StudioSettings, set_threads
    from studio.ui import LAUNCH_KWARGS, QUEUE_KWARGS, build_demo

    settings = StudioSettings.from_env(real=args.real, models=[m for m in args.models.split(",") if m.strip()],
                                       device=args.device, compile="off" if args.no_compile else None,
                                       fp8=True if args.fp8 else None)
    if reason := settings.fp8_problem():
        raise SystemExit(f"error: --fp8 / STUDIO_FP8: {reason}")
    set_threads(settings.device)
    demo = build_demo(settings, warm_up=not args.no_warm_up)
    # Gradio rebuilds a pandas summary of its past events after every event unless told otherwise: under many
    # voters that costs about a tenth of the server's CPU (benchmarks/load_test.py)
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
    demo.queue(**QUEUE_KWARGS).launch(server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
