"""The resumable training loop that every trainer of this package runs (toy-base's VAE and denoiser stages,
toy-decoder, toy-distill, toy-pickscore, guidance), on accelerate.

A trainer builds its models and optimiser, passes them through its ``Accelerator.prepare``, and hands the loop one
function, ``step_fn(step) -> loss`` or ``(loss, logs)``, that draws batch ``step`` (1-based) and updates the weights.
The loop then

* **resumes**: ``folder/progress.json`` holds the last saved step and ``folder/state`` what
  ``accelerator.save_state`` saved there (weights, optimiser, every process's random states, the EMA); the state is
  loaded before the first step, so a run paused after step k and run again takes the very steps k+1, k+2, … that an
  uninterrupted run takes;
* **pauses at the deadline**: the state is saved and ``run`` returns False; the same command run again resumes;
* keeps an **EMA** of given parameters (``EMA``), saved with the state and swapped in for the export;
* **checks the loss**: a non-finite loss raises ``FloatingPointError``; the check runs before every save, so a saved
  state is always finite;
* has **one writer**: every process calls ``save_state`` (accelerate writes the shared files once and each process
  its own random state); only the main process writes ``progress.json`` and the export;
* **stops every process at the same step**: only the main process reads the clock, and its decision reaches the
  others by a broadcast (``decided_on_main``); a process that stopped alone would leave the rest waiting in DDP's
  gradient all-reduce.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

StepOutput = torch.Tensor | tuple[torch.Tensor, dict]


class Progress:
    """``progress.json`` in a stage folder: the step reached and whether the stage is done, plus what a trainer
    adds. Written whole, through a temporary file, so a reader never sees half of it."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "progress.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"step": 0, "done": False}

    @property
    def step(self) -> int:
        return self.data["step"]

    @property
    def done(self) -> bool:
        return self.data["done"]

    def save(self, **kw) -> None:
        self.data.update(kw)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def lr_at(base: float, step: int, total: int, warmup: int, decay: bool = True) -> float:
    """The learning rate at ``step`` of ``total``: ``base`` warmed up linearly over ``warmup`` steps, times
    ``½ (1 + cos(π · step / total))`` (a cosine decay to 0 at ``total``) unless ``decay`` is False."""
    lr = base * min(1.0, step / warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * step / total)) if decay else lr


def apply_gradients(accelerator: Accelerator, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    clip: Iterable[torch.nn.Parameter] | None = None, max_norm: float = 1.0) -> None:
    """One eager update: backward, the gradient norm of ``clip`` (when given) clipped to ``max_norm``, the
    optimiser's step, gradients zeroed."""
    accelerator.backward(loss)
    if clip is not None:
        accelerator.clip_grad_norm_(clip, max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class EMA:
    """An exponential moving average of ``params``: diffusers' ``EMAModel`` with its warm-up (the decay at update n
    is ``min(decay, 1 − (1 + n)^(−3/4))``), what the toy pipelines export."""

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.average = EMAModel(self.params, decay=decay, use_ema_warmup=True, power=3 / 4, foreach=True)

    def to(self, device) -> None:
        self.average.to(device)

    def step(self) -> None:
        self.average.step(self.params)

    @contextmanager
    def swapped_in(self):
        """The averaged weights in ``params`` inside the block (e.g. for an export), the trained ones after it."""
        self.average.store(self.params)
        self.average.copy_to(self.params)
        try:
            yield
        finally:
            self.average.restore(self.params)


def decided_on_main(accelerator: Accelerator, decision: bool) -> bool:
    """The main process's ``decision``, on every process (the others' own are ignored). A collective: every process
    calls it at the same step."""
    if accelerator.num_processes == 1:
        return bool(decision)
    flag = torch.tensor([int(bool(decision))], device=accelerator.device)
    return bool(broadcast(flag, from_process=0).item())


class TrainingLoop:
    """Steps ``progress.step + 1 … steps`` of one stage whose state lives in ``folder`` (see the module docstring).

    ``deadline``: a time (``clock()``, seconds) after which the run pauses. ``save_every``: also save every so many
    steps (0: only at a pause and at the end). ``check_every``: read the loss (a host synchronisation) only every so
    many steps, and at every save and the last step; 1 for an eager step, more for a replayed CUDA graph. ``ema``:
    stepped after every update, saved with the state. ``hint``: what the error of a non-finite loss advises. A
    finished stage given more ``steps`` goes on from its saved state."""

    def __init__(self, accelerator: Accelerator, folder: Path, steps: int, deadline: float, *, name: str,
                 save_every: int = 0, check_every: int = 1, ema: EMA | None = None,
                 hint: str = "lower the learning rate and resume", clock: Callable[[], float] = time.time):
        self.accelerator, self.folder, self.steps, self.deadline = accelerator, Path(folder), steps, deadline
        self.name, self.save_every, self.check_every, self.ema = name, save_every, max(1, check_every), ema
        self.hint, self.clock = hint, clock
        self.progress = Progress(self.folder)
        if self.progress.done and self.progress.step < steps:
            self.progress.data["done"] = False  # more steps than the finished run took: it goes on
        self.step = self.progress.step
        if ema is not None:
            accelerator.register_for_checkpointing(ema.average)

    @property
    def done(self) -> bool:
        return self.progress.done

    def resume(self) -> None:
        """Load the saved state, if there is one."""
        if (self.folder / "state").exists():
            self.accelerator.load_state(self.folder / "state")
            if self.ema is not None:
                self.ema.to(self.accelerator.device)  # the loaded average arrives on the CPU

    def save(self, **progress) -> None:
        """The state (every process), then ``progress.json`` (the main process) at the current step."""
        self.accelerator.save_state(self.folder / "state")
        if self.accelerator.is_main_process:
            self.progress.save(step=self.step, **progress)

    def pause_now(self) -> bool:
        """Whether the main process's clock has passed the deadline, on every process."""
        main = self.accelerator.is_main_process
        return decided_on_main(self.accelerator, main and self.clock() > self.deadline)

    def check(self, loss: torch.Tensor, step: int) -> float:
        """The loss as a number (a host synchronisation); ``FloatingPointError`` when it is not finite."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.name}: loss became {value} at step {step}; {self.hint} "
                                     "(the last saved state is intact)")
        return value

    def run(self, step_fn: Callable[[int], StepOutput], *, complete: Callable[[], dict] | None = None,
            export: Callable[[int, bool], None] | None = None) -> bool:
        """Resume, step until ``steps`` or the deadline, save; True when the stage is done.

        ``complete()``: runs on every process once the last step is taken, before the stage is marked done; what it
        returns is added to ``progress.json``. ``export(step, finished)``: runs on the main process at the end,
        paused or not, with the EMA weights swapped in when there is an EMA."""
        accelerator = self.accelerator
        self.resume()
        start = self.step
        bar = tqdm(total=self.steps, initial=start, desc=self.name, disable=not accelerator.is_main_process)
        finished = True
        for step in range(start + 1, self.steps + 1):
            out = step_fn(step)
            loss, logs = out if isinstance(out, tuple) else (out, {})
            self.step = step
            pause = step < self.steps and self.pause_now()
            save = pause or (self.save_every > 0 and step % self.save_every == 0)
            if save or step == self.steps or step % self.check_every == 0:
                value = self.check(loss, step)
                bar.set_postfix({"loss": f"{value:.4f}", **{k: f"{float(v):.4f}" for k, v in logs.items()}})
            if self.ema is not None:
                self.ema.step()
            bar.update(1)
            if save:
                self.save()
            if pause:
                finished = False
                break
        bar.close()
        if finished and (self.step > start or not self.progress.done):
            self.save(done=True, **(complete() if complete is not None else {}))
        if export is not None and accelerator.is_main_process:
            with self.ema.swapped_in() if self.ema is not None else nullcontext():
                export(self.step, finished)
        accelerator.wait_for_everyone()  # no process may exit (and make the launcher end the rest) before the export
        return finished
