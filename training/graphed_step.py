"""One training step (forward, backward, gradient clipping, optimiser update) captured once as a CUDA graph and
replayed every step.

The guidance network is small: at 8 pairs per step its eager step on an H200 issues ~2,400 kernel launches for
~16 ms of GPU work and takes ~60 ms, so the step is bound by the host, not the GPU. A replayed graph launches the
whole step at once. What the step function must respect (PyTorch's "whole network capture"):

* fixed shapes: the same batch and the same number of ``L_consistency`` rows every step (``consistency_rows``);
* no host synchronisation inside it (no ``.item()``, no data-dependent shapes, no ``torch.isfinite(...)`` branches);
* an optimiser made with ``capturable=True`` and a tensor learning rate (``set_lr`` fills it in place);
* autocast, if any, with ``cache_enabled=False``.

The first call warms up on a side stream (cuDNN autotuning, optimiser state), puts the parameters and the optimiser
state back as they were, captures, then replays: so every step, the first included, is one real update.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def capturable_adamw(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW whose step can run inside a CUDA graph (state and learning rate on the device)."""
    return torch.optim.AdamW(params, lr=torch.tensor(lr, device=device), weight_decay=weight_decay, capturable=True)


def set_lr(optimizer, lr: float) -> None:
    """Set every group's learning rate: in place when it is a tensor (a captured graph holds its address)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def place_lr(optimizer) -> None:
    """Each group's tensor learning rate on its parameters' device. ``load_state_dict`` (a resumed run) brings it
    back wherever the checkpoint was loaded (the CPU, under accelerate), and a capture cannot read host memory."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        if torch.is_tensor(group["lr"]) and group["lr"].device != device:
            group["lr"] = group["lr"].to(device)


def consistency_rows(eligible: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``k`` row indices and weights whose weighted sum estimates a sum over the ``eligible`` rows without
    bias: ``k`` of the ``m`` eligible rows drawn without replacement, each weighted ``m / k``; when ``m < k``, all
    of them with weight 1 and the rest padded with row 0 at weight 0. A fixed ``k`` keeps the step's shapes fixed
    (what a CUDA graph needs), whatever the batch draws."""
    if k < 1:
        raise ValueError(f"the number of consistency rows must be at least 1, got {k}")
    candidates = np.flatnonzero(eligible)
    m = len(candidates)
    if m >= k:
        return np.sort(rng.choice(candidates, k, replace=False)), np.full(k, m / k)
    rows = np.concatenate([candidates, np.zeros(k - m, dtype=candidates.dtype)])
    return rows, np.concatenate([np.ones(m), np.zeros(k - m)])


class GraphedStep:
    """``step_fn(key, **inputs) -> tuple of tensors`` (it must call backward and ``optimizer.step()`` itself, and
    not zero the gradients), replayed from one CUDA graph per ``key`` (e.g. the readout and the main objective
    capture separately). ``params``: the trainable parameters (the warm-up's updates to them are undone). ``inputs``
    are copied into static buffers before each replay; the returned tensors are the graph's own outputs (read them
    before the next call)."""

    def __init__(self, step_fn: Callable[..., tuple[torch.Tensor, ...]], params: list[torch.nn.Parameter],
                 optimizer: torch.optim.Optimizer, warmup: int = 3):
        self.step_fn, self.params, self.optimizer, self.warmup = step_fn, list(params), optimizer, warmup
        self.graphs: dict = {}

    def __call__(self, key=None, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if key not in self.graphs:
            self.graphs[key] = self._capture(key, inputs)
        graph, static, outputs = self.graphs[key]
        for name, value in inputs.items():
            static[name].copy_(value, non_blocking=True)
        graph.replay()
        return outputs

    def _snapshot(self) -> tuple[list[torch.Tensor], dict]:
        params = [p.detach().clone() for p in self.params]
        state = {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                 for p, s in self.optimizer.state.items()}
        return params, state

    @torch.no_grad()
    def _restore(self, snapshot: tuple[list[torch.Tensor], dict]) -> None:
        """Undo the warm-up updates in place (the graph will hold these very tensors)."""
        params, state = snapshot
        for p, saved in zip(self.params, params):
            p.copy_(saved)
        for p, s in self.optimizer.state.items():
            before = state.get(id(p))
            for name, value in s.items():
                if torch.is_tensor(value):
                    value.copy_(before[name]) if before is not None else value.zero_()

    def _capture(self, key, inputs: dict[str, torch.Tensor]):
        place_lr(self.optimizer)
        static = {name: value.clone() for name, value in inputs.items()}
        snapshot = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.optimizer.zero_grad(set_to_none=True)
                self.step_fn(key, **static)
        torch.cuda.current_stream().wait_stream(side)
        self._restore(snapshot)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            outputs = self.step_fn(key, **static)
        return graph, static, tuple(o.detach() for o in outputs)
