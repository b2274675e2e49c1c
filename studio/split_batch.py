"""Run one denoiser call as several smaller calls in threads, for a CPU with one torch thread per core.

The studio gives torch one thread on a small CPU (two OpenMP threads slow down many times as soon as another
process is busy: ``engine.set_threads``). Then a single image's trajectory leaves the other core idle. With
classifier-free guidance every denoiser call carries a batch of two (unconditional and conditional); running the
two halves in two Python threads (torch releases the GIL inside its kernels) uses both cores without OpenMP's
barriers, so a busy neighbour slows it down gracefully.

    pipe.transformer = SplitBatch(pipe.transformer, workers=2)

Every tensor argument whose first dimension is the batch (also inside dicts such as SDXL's
``added_cond_kwargs``) is split; the outputs are concatenated. A sample does not depend on the others in its
batch, so the result equals the unsplit call up to float rounding.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput


def _split(value, batch: int, parts: int):
    """``value`` as ``parts`` pieces along the batch (tensors of that batch size, recursively in dicts, lists and
    tuples); anything else is repeated as is."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return list(value.chunk(parts))
    if isinstance(value, dict):
        pieces = {k: _split(v, batch, parts) for k, v in value.items()}
        return [{k: pieces[k][i] for k in value} for i in range(parts)]
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, torch.Tensor) for v in value):
        pieces = [_split(v, batch, parts) for v in value]
        return [type(value)(p[i] for p in pieces) for i in range(parts)]
    return [value] * parts


class SplitBatch(torch.nn.Module):
    """Wraps a diffusers UNet or SD3 transformer; everything a pipeline reads off it comes from the wrapped model."""

    def __init__(self, model: torch.nn.Module, workers: int = 2):
        super().__init__()
        if int(workers) < 2:
            raise ValueError(f"SplitBatch needs at least 2 workers, got {workers}")
        self.model = model
        self.workers = int(workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="split-batch")

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)

    def _call(self, call):
        with torch.no_grad():  # grad mode is per thread; the caller's is off (checked in forward)
            return self.model(*call[0], **call[1])

    def forward(self, *args, **kwargs):
        first = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        batch = first.shape[0] if isinstance(first, torch.Tensor) else 0
        parts = min(self.workers, batch)
        if parts < 2 or torch.is_grad_enabled():
            return self.model(*args, **kwargs)
        pieces_args = [_split(a, batch, parts) for a in args]
        pieces_kwargs = {k: _split(v, batch, parts) for k, v in kwargs.items()}
        calls = [([p[i] for p in pieces_args], {k: v[i] for k, v in pieces_kwargs.items()}) for i in range(parts)]
        outputs = list(self._pool.map(self._call, calls))
        first_out = outputs[0]
        if isinstance(first_out, tuple):
            return (torch.cat([o[0] for o in outputs]),) + tuple(first_out[1:])
        sample = torch.cat([o.sample for o in outputs])
        return type(first_out)(sample=sample) if isinstance(
            first_out, (Transformer2DModelOutput, UNet2DConditionOutput)) else sample
