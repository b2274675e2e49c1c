"""The training loop every trainer runs (training/loop.py), on a one-layer model: a run paused at its deadline and
resumed ends exactly where an uninterrupted run ends; a non-finite loss stops it with a clear error before it is
saved; only the main process writes; the main process's decision to stop reaches every process."""

import itertools
import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from training import loop as loop_module
from training.loop import EMA, Progress, TrainingLoop, apply_gradients, decided_on_main, lr_at

STEPS = 6


DEADLINE = 2.5


def never() -> float:
    return 0.0  # a clock that never reaches the deadline


def ticking():
    """A clock that reads 1, 2, 3, … at steps 1, 2, 3, …: the main process pauses after step 3."""
    ticks = itertools.count(1)
    return lambda: float(next(ticks))


class AsProcess:
    """This single process's accelerator, answering as process ``index`` of ``count``; it records its
    ``save_state`` calls."""

    def __init__(self, accelerator: Accelerator, index: int, count: int):
        self._accelerator, self.process_index, self.num_processes = accelerator, index, count
        self.is_main_process = index == 0
        self.saved = 0

    def save_state(self, *args, **kwargs):
        self.saved += 1
        return self._accelerator.save_state(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._accelerator, name)


def setup(folder, steps=STEPS, clock=never, accelerator=None, **loop_kwargs):
    """A linear regression trained with AdamW and an EMA; each step draws its batch from the global random state,
    so a resumed run matches only if the saved state brings it back."""
    set_seed(0)
    accelerator = accelerator or Accelerator()
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    ema = EMA(model.parameters(), decay=0.9)
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    loop = TrainingLoop(accelerator, folder, steps, DEADLINE, name="toy", ema=ema, clock=clock, **loop_kwargs)

    def step_fn(step: int) -> torch.Tensor:
        x = torch.randn(8, 4).to(accelerator.device)
        loss = (model(x).squeeze(-1) - x.sum(-1)).pow(2).mean()
        apply_gradients(accelerator, loss, opt, clip=model.parameters())
        return loss

    return loop, step_fn, model, ema


def weights(model, ema) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()] + [s.clone() for s in ema.average.shadow_params]


def test_a_run_paused_at_its_deadline_resumes_to_the_uninterrupted_result(tmp_path):
    loop, step_fn, model, ema = setup(tmp_path / "straight")
    assert loop.run(step_fn) is True
    straight = weights(model, ema)

    loop, step_fn, _, _ = setup(tmp_path / "paused", clock=ticking())
    assert loop.run(step_fn) is False
    assert Progress(tmp_path / "paused").data == {"step": 3, "done": False}
    loop, step_fn, model, ema = setup(tmp_path / "paused")  # the same command, run again
    assert loop.step == 3
    assert loop.run(step_fn) is True
    assert Progress(tmp_path / "paused").data == {"step": STEPS, "done": True}
    resumed = weights(model, ema)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))
    assert not torch.equal(resumed[0], resumed[2])  # the EMA is not the weights

    # a finished run given more steps goes on from its state; given none, it takes no step and saves nothing
    loop, step_fn, model, ema = setup(tmp_path / "paused", steps=STEPS + 2)
    assert loop.run(step_fn) is True and loop.step == STEPS + 2
    saved_at = (tmp_path / "paused" / "progress.json").stat().st_mtime_ns
    loop, _, _, _ = setup(tmp_path / "paused", steps=STEPS + 2)
    assert loop.run(lambda step: pytest.fail("no step is left")) is True
    assert (tmp_path / "paused" / "progress.json").stat().st_mtime_ns == saved_at


def test_the_export_sees_the_ema_weights_and_the_trained_ones_come_back(tmp_path):
    loop, step_fn, model, ema = setup(tmp_path, steps=3)
    seen = []
    assert loop.run(step_fn, export=lambda step, finished: seen.append((step, finished, model.weight.clone())))
    assert len(seen) == 1 and seen[0][:2] == (3, True)
    assert torch.equal(seen[0][2], ema.average.shadow_params[0])
    assert not torch.equal(model.weight, ema.average.shadow_params[0])


def test_complete_runs_before_the_stage_is_marked_done(tmp_path):
    loop, step_fn, _, _ = setup(tmp_path, steps=2)

    def complete() -> dict:
        assert not Progress(tmp_path).done
        return {"latent_stats": {"scaling_factor": 0.5}}

    assert loop.run(step_fn, complete=complete)
    assert json.loads((tmp_path / "progress.json").read_text()) == {
        "step": 2, "done": True, "latent_stats": {"scaling_factor": 0.5}}


@pytest.mark.parametrize("check_every", [1, 5])
def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tmp_path, check_every):
    """Read every step (eager) or only every 5th (a replayed CUDA graph): the step-3 NaN is caught at the latest
    by the check before the step-3 save, so the saved state is the step-2 one."""
    loop, step_fn, _, _ = setup(tmp_path, save_every=1 if check_every == 1 else 3, check_every=check_every)

    def nan_at_3(step: int) -> torch.Tensor:
        loss = step_fn(step)
        return loss * float("nan") if step == 3 else loss

    with pytest.raises(FloatingPointError, match=r"toy: loss became nan at step 3; lower the learning rate and "
                                                 r"resume \(the last saved state is intact\)"):
        loop.run(nan_at_3)
    if check_every == 1:
        assert Progress(tmp_path).data == {"step": 2, "done": False}
    else:
        assert not (tmp_path / "progress.json").exists() and not (tmp_path / "state").exists()


def test_only_the_main_process_writes_progress_and_the_export(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_module, "broadcast", lambda tensor, from_process=0: torch.zeros(1, dtype=torch.long))
    for index in (0, 1):
        process = AsProcess(Accelerator(), index, 2)
        folder = tmp_path / f"process{index}"
        loop, step_fn, _, _ = setup(folder, accelerator=process, save_every=2)
        exported = []
        assert loop.run(step_fn, export=lambda step, finished: exported.append(step)) is True
        assert process.saved == 4  # at steps 2, 4, 6 and at the end: every process calls save_state
        assert (folder / "progress.json").exists() is (index == 0)
        assert exported == ([STEPS] if index == 0 else [])


def test_the_main_process_decides_when_every_process_stops(tmp_path, monkeypatch):
    sent = []

    def broadcast_from_main(tensor, from_process=0):
        assert from_process == 0
        sent.append(int(tensor.item()))
        return tensor

    monkeypatch.setattr(loop_module, "broadcast", broadcast_from_main)
    loop, step_fn, _, _ = setup(tmp_path / "main", accelerator=AsProcess(Accelerator(), 0, 2), clock=ticking())
    assert loop.run(step_fn) is False and loop.step == 3
    assert sent == [0, 0, 1]  # no broadcast after the last step: every process knows it is the last

    # process 1 of 2 never reads its own clock; it stops at the step where the main process's decision arrives
    decisions = iter([0, 0, 1])
    monkeypatch.setattr(loop_module, "broadcast", lambda tensor, from_process=0: torch.tensor([next(decisions)]))

    def no_clock() -> float:
        raise AssertionError("only the main process reads the clock")

    loop, step_fn, _, _ = setup(tmp_path / "other", accelerator=AsProcess(Accelerator(), 1, 2), clock=no_clock)
    assert loop.run(step_fn) is False and loop.step == 3


def test_decided_on_main_needs_no_collective_on_one_process(monkeypatch):
    monkeypatch.setattr(loop_module, "broadcast", lambda *a, **k: pytest.fail("no broadcast on one process"))
    accelerator = Accelerator()
    assert decided_on_main(accelerator, True) is True and decided_on_main(accelerator, False) is False


def test_lr_at_warms_up_then_decays_to_zero():
    assert lr_at(1.0, 100, 1000, warmup=200) == pytest.approx(0.5 * 0.5 * (1 + torch.cos(torch.tensor(0.1 * torch.pi))))
    assert lr_at(2.0, 1000, 1000, warmup=200) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(2.0, 100, 1000, warmup=200, decay=False) == 1.0
    assert lr_at(2.0, 900, 1000, warmup=200, decay=False) == 2.0
