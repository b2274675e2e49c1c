"""The fixed-size L_consistency rows, the in-place learning rate, and (on a CUDA machine) that a replayed CUDA-graph
training step gives the very updates of the eager step."""

import numpy as np
import pytest
import torch

from alignment.guidance_network import GuidanceNetwork
from training.graphed_step import GraphedStep, capturable_adamw, consistency_rows, place_lr, set_lr
from training.guidance import consistency_row_count


def test_consistency_rows_have_a_fixed_count_and_an_unbiased_weighted_sum():
    rng = np.random.default_rng(0)
    values = rng.normal(size=40) + 3.0
    eligible = rng.random(40) < 0.4
    m, k = int(eligible.sum()), 6
    assert m > k
    estimates = []
    for _ in range(20000):
        rows, weights = consistency_rows(eligible, k, rng)
        assert len(rows) == k and len(set(rows.tolist())) == k and eligible[rows].all()
        assert np.allclose(weights, m / k)
        estimates.append(float((weights * values[rows]).sum()))
    assert np.mean(estimates) == pytest.approx(values[eligible].sum(), rel=5e-3)


def test_consistency_rows_pad_with_zero_weight_when_too_few_are_eligible():
    eligible = np.array([False, True, False, True, False])
    rows, weights = consistency_rows(eligible, 4, np.random.default_rng(1))
    assert rows.tolist() == [1, 3, 0, 0] and weights.tolist() == [1.0, 1.0, 0.0, 0.0]
    rows, weights = consistency_rows(np.zeros(5, bool), 2, np.random.default_rng(1))
    assert weights.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="at least 1"):
        consistency_rows(eligible, 0, np.random.default_rng(1))


def test_consistency_row_count_is_the_expected_eligible_share():
    assert consistency_row_count(256, 0.5, 1.0) == 96  # 256 · ½ preferred · ¾ with η > 0
    assert consistency_row_count(256, 0.5, 0.25) == 24
    assert consistency_row_count(4, 0.5, 0.1) == 1


def test_set_lr_fills_a_tensor_learning_rate_in_place():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = capturable_adamw([p], 1e-3, 0.0, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == 0.25
    plain = torch.optim.AdamW([p], lr=1e-3)
    set_lr(plain, 0.5)
    assert plain.param_groups[0]["lr"] == 0.5


def test_a_resumed_tensor_learning_rate_goes_back_to_the_parameters_device(tmp_path):
    """load_state_dict restores a tensor lr as saved or as mapped (accelerate maps to the CPU); place_lr puts it
    back beside the parameters (here the parameters stand on "meta" for a GPU)."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = capturable_adamw([p], 1e-3, 0.0, torch.device("cpu"))
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    resumed = torch.optim.AdamW([meta], lr=1e-3, capturable=True)
    resumed.load_state_dict(torch.load(tmp_path / "opt.pt", map_location="cpu"))
    assert resumed.param_groups[0]["lr"].device.type == "cpu"
    place_lr(resumed)
    assert resumed.param_groups[0]["lr"].device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device (run on the GPU machine)")
def test_graphed_step_matches_the_eager_step():
    """Five steps of a toy guidance network with L_consistency (a second-order backward): replayed from a CUDA
    graph, they give the eager run's losses and weights."""
    device = torch.device("cuda")

    def make():
        torch.manual_seed(0)
        net = GuidanceNetwork.toy_size().to(device)
        # capturable AdamW with a tensor lr, as the trainer makes it, but eps = 1: with a tiny eps Adam turns the
        # last-bit noise of atomic-add backward kernels in near-zero gradients into whole lr-sized steps (in two
        # eager runs as much as here), which would leave nothing to compare
        return net, torch.optim.AdamW(net.parameters(), lr=torch.tensor(1e-3, device=device), weight_decay=1e-4,
                                      eps=1.0, capturable=True)

    def batches():
        g = torch.Generator(device).manual_seed(1)
        for _ in range(5):
            yield dict(x=torch.randn(8, 4, 16, 16, device=device, generator=g),
                       text=torch.randn(8, 32, device=device, generator=g),
                       t=torch.randint(0, 1000, (8,), device=device, generator=g).float(),
                       beta=torch.rand(8, device=device, generator=g) + 0.1,
                       eta=torch.rand(8, device=device, generator=g) * 2,
                       target=torch.randn(8, 4, 16, 16, device=device, generator=g))

    def step_fn(net, opt):
        def step(key, x, text, t, beta, eta, target):  # device tensors only: a capture cannot copy from the host
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                u = net(x, text, t, beta, eta)
                (grad,) = torch.autograd.grad(u.sum(), x, create_graph=True)
                loss = u.pow(2).mean() + (grad - target).pow(2).mean()
                loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            return (loss.detach(),)
        return step

    eager_net, eager_opt = make()
    eager_step, eager_losses = step_fn(eager_net, eager_opt), []
    for i, b in enumerate(batches()):
        set_lr(eager_opt, 0.05 * (i + 1))
        eager_losses.append(float(eager_step(None, **b)[0]))
        eager_opt.zero_grad(set_to_none=True)
    net, opt = make()
    runner, losses = GraphedStep(step_fn(net, opt), list(net.parameters()), opt), []
    for i, b in enumerate(batches()):
        set_lr(opt, 0.05 * (i + 1))
        losses.append(float(runner(None, **b)[0]))
    assert len(runner.graphs) == 1
    assert np.allclose(losses, eager_losses, rtol=1e-4), (losses, eager_losses)
    worst = max(float((p - q).detach().abs().max()) for p, q in zip(net.parameters(), eager_net.parameters()))
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(net.parameters(), make()[0].parameters()))
    assert moved > 1e-3, f"the five updates moved no weight by more than {moved:.3g}"  # the comparison means something
    assert worst < 1e-5, f"weights differ by up to {worst:.3g} (the updates moved them by up to {moved:.3g})"
