"""Hub twins: local folders in the layout ``from_pretrained`` reads from the Hugging Face hub, holding the real
architectures with random weights, for machines that run the real models' code at full size but cannot download
the weights.

    python -m evaluations.hub_twins --out /models                 # all four, full size, bf16, on CUDA if present
    python -m evaluations.hub_twins --out /tmp/twins --tiny       # the same layout at toy widths, in seconds
    STUDIO_REWARD=/models/pickscore STUDIO_GUIDANCE=/models/guidance \\
        python app.py --models /models/sdxl-turbo,/models/sd3.5-large-turbo --device cuda

Written under ``--out``:

* ``sdxl-turbo/``: stabilityai/sdxl-turbo's folders: ``model_index.json``; ``unet``, ``vae``, ``text_encoder``,
  ``text_encoder_2`` (``config.json`` and safetensors weights, sharded with an index past ``--max-shard-size``);
  ``scheduler/scheduler_config.json``; ``tokenizer``, ``tokenizer_2`` (the hub's vocab.json, merges.txt,
  tokenizer_config.json and special_tokens_map.json).
* ``sd3.5-large-turbo/``: the same for stabilityai/stable-diffusion-3.5-large-turbo, without the T5 encoder
  (``text_encoder_3`` and ``tokenizer_3`` are null in model_index.json: T5's tokenizer files are not among the
  collected configs; see ``evaluations/real_scale.py``). Its ``tokenizer_2`` files are SDXL's (the same CLIP-bigG
  tokenizer; SD3.5's copies were not found).
* ``pickscore/``: yuvalkirstain/PickScore_v1's ``CLIPModel`` (``config.json``, ``model.safetensors``) with the
  processor of laion/CLIP-ViT-H-14-laion2B-s32B-b79K in the same folder (``preprocessor_config.json`` and the
  tokenizer files), which ``load_reward`` accepts as a folder.
* ``guidance/``: an SDXL-size ``GuidanceNetwork`` (``config.json``, ``diffusion_pytorch_model.safetensors``, fp32
  like a trained one), its text width the pooled width of ``sdxl-turbo``'s second text encoder.

Every component comes from ``evaluations.real_scale``'s builders (the public configs in ``alignment/model_configs/``)
and is built, saved and freed before the next, so memory holds one component at a time: the SD3.5-Large
transformer (8.1 B parameters, 16 GB in bf16) is the peak. ``model_index.json`` comes from the pipeline built on the
meta device, and is written after its components, so an interrupted folder does not look complete.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from . import real_scale
from .real_scale import SD35, SDXL

MODELS = ("sdxl-turbo", "sd3.5-large-turbo", "pickscore", "guidance")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# The shard sizes the hub's files were written with: diffusers' default for its models, transformers' (before 5.0)
# for the text encoders and CLIP.
SHARD_SIZES = {"diffusers": "10GB", "transformers": "5GB"}
# Where each tokenizer folder's tokenizer_config.json and special_tokens_map.json come from (vocab.json and
# merges.txt are the one CLIP BPE, kept under sdxl-turbo/tokenizer).
TOKENIZERS = {
    "sdxl-turbo": {"tokenizer": SDXL / "tokenizer", "tokenizer_2": SDXL / "tokenizer_2"},
    "sd3.5-large-turbo": {"tokenizer": SD35 / "tokenizer", "tokenizer_2": SDXL / "tokenizer_2"},
}
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")
BPE_FILES = (SDXL / "tokenizer" / "vocab.json", SDXL / "tokenizer" / "merges.txt")


def write_tokenizer(configs: Path, folder: Path) -> None:
    """The hub's four CLIP tokenizer files: the configs from ``configs``, the BPE vocab and merges."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in [configs / name for name in TOKENIZER_FILES] + list(BPE_FILES):
        shutil.copyfile(source, folder / source.name)


def save_component(component, folder: Path, max_shard_size: str | None = None) -> None:
    """``save_pretrained`` into ``folder``; models as safetensors, sharded past the hub's shard size."""
    if isinstance(component, torch.nn.Module):
        from diffusers import ModelMixin

        library = "diffusers" if isinstance(component, ModelMixin) else "transformers"
        component.save_pretrained(folder, max_shard_size=max_shard_size or SHARD_SIZES[library])
    else:
        component.save_pretrained(folder)


def _free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


class Writer:
    """Writes the twins under ``out``; ``log`` gets one line per component written."""

    def __init__(self, out: str | Path, *, tiny: bool = False, dtype: torch.dtype = torch.bfloat16,
                 device: str | torch.device | None = None, max_shard_size: str | None = None, seed: int = 0,
                 log: Callable[[str], None] = print):
        self.out, self.tiny, self.dtype, self.seed, self.log = Path(out), tiny, dtype, seed, log
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_shard_size = max_shard_size

    def folder(self, model: str) -> Path:
        return self.out / model

    def write(self, models=MODELS) -> dict[str, Path]:
        writers = {"sdxl-turbo": self.sdxl_turbo, "sd3.5-large-turbo": self.sd35_large_turbo,
                   "pickscore": self.pickscore, "guidance": self.guidance}
        unknown = set(models) - set(writers)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; choose from {', '.join(MODELS)}")
        return {model: writers[model]() for model in models}

    def _component(self, folder: Path, build: real_scale.Builder, seed: int) -> None:
        torch.manual_seed(seed)  # each component's weights depend on the seed alone, not on what was built before
        start = time.perf_counter()
        component = build(self.device, self.dtype)
        save_component(component, folder, self.max_shard_size)
        n = real_scale.n_parameters(component) if isinstance(component, torch.nn.Module) else None
        del component
        _free(self.device)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        count = "" if n is None else f"{n / 1e6:,.1f} M parameters, "
        self.log(f"{folder}: {count}{size / 2**20:,.1f} MiB, {time.perf_counter() - start:.1f} s")

    def _pipeline(self, model: str, parts: dict[str, real_scale.Builder], on_meta: Callable) -> Path:
        folder = self.folder(model)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (name, build) in enumerate(parts.items()):
            if name in TOKENIZERS[model]:
                write_tokenizer(TOKENIZERS[model][name], folder / name)
            else:
                self._component(folder / name, build, self.seed + i)
        on_meta("meta", self.dtype, tiny=self.tiny).save_config(folder)  # model_index.json, last
        return folder

    def sdxl_turbo(self) -> Path:
        return self._pipeline("sdxl-turbo", real_scale.sdxl_parts(self.tiny), real_scale.sdxl_turbo)

    def sd35_large_turbo(self) -> Path:
        return self._pipeline("sd3.5-large-turbo", real_scale.sd35_parts(self.tiny), real_scale.sd35_large_turbo)

    def pickscore(self) -> Path:
        """The CLIPModel and its processor (image processor and tokenizer files) in one folder."""
        folder = self.folder("pickscore")
        parts = real_scale.pickscore_parts(self.tiny)
        self._component(folder, parts["model"], self.seed)
        save_component(parts["image_processor"](self.device, self.dtype), folder)  # preprocessor_config.json
        write_tokenizer(SDXL / "tokenizer", folder)  # the CLIP tokenizer that pads with <|endoftext|>, as laion's
        return folder

    def guidance(self) -> Path:
        """An untrained guidance network of the size the SDXL sampler takes (toy size with ``tiny``), in fp32."""
        from alignment.guidance_network import GuidanceNetwork

        text_dim = real_scale.pooled_width(self.tiny)
        folder = self.folder("guidance")
        make = GuidanceNetwork.toy_size if self.tiny else GuidanceNetwork.sdxl_size
        self._component(folder, lambda device, dtype: make(text_dim=text_dim), self.seed)
        return folder


def studio_command(folders: dict[str, Path], device: str = "cuda") -> str:
    """The command that serves the studio on the twins that were written."""
    env = [f"STUDIO_REWARD={folders['pickscore']}"] if "pickscore" in folders else []
    env += [f"STUDIO_GUIDANCE={folders['guidance']}"] if "guidance" in folders else []
    models = ",".join(str(folders[m]) for m in ("sdxl-turbo", "sd3.5-large-turbo") if m in folders)
    return " ".join(env + ["python app.py"] + ([f"--models {models}"] if models else []) + [f"--device {device}"])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluations.hub_twins", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the twins into (one subfolder each)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="which twins to write")
    parser.add_argument("--tiny", action="store_true", help="toy widths of the same architectures (tests, CPU)")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="weights' dtype (default bf16; "
                        "the guidance network is always fp32)")
    parser.add_argument("--device", default=None, help="where weights are drawn (default: cuda if present, else "
                        "cpu); saving copies one shard at a time to the host")
    parser.add_argument("--max-shard-size", default=None, help="e.g. 5GB (default: 10GB for diffusers models, 5GB "
                        "for transformers ones, as on the hub)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per saved model, in between the lines below
    writer = Writer(args.out, tiny=args.tiny, dtype=DTYPES[args.dtype], device=args.device,
                    max_shard_size=args.max_shard_size, seed=args.seed)
    folders = writer.write(dict.fromkeys(args.models))
    print("Serve the studio on them with:\n  " + studio_command(folders, "cpu" if args.tiny else "cuda"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
