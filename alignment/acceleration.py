"""Make a loaded pipeline fast on a GPU, once, before the first request:

    pipe, preset = load_pipeline("sdxl-turbo", device="cuda")
    done = accelerate(pipe, network=network, reward=reward)   # then warm it up at the shapes you will serve

* **fused attention projections** (``pipe.fuse_qkv_projections()``: one matmul for q, k and v), where the pipeline
  has them and its attention processors are diffusers' own (an SD3 pipeline without T5 runs
  ``repeated_context``'s processor, which reads q, k and v apart, so it is left unfused);
* **channels-last** memory for the convolutional models (UNet, VAE, the guidance network);
* **regional compilation**: ``torch.compile`` of each *repeated* block (``REPEATED_BLOCKS``: the UNet's and the
  reward's transformer layers, SD3's joint blocks) instead of the whole model. Blocks of one class share one
  compiled graph, so compiling costs about one block's worth however deep the model is, and the code around the
  blocks (the schedulers, the guidance's autograd call, ``repeated_context``'s token bookkeeping) stays eager;
  the VAE decoder, small and with static shapes, is compiled whole;
* **CUDA graphs** (``CudaGraphed``) of the calls of one-step sampling: the UNet, the VAE decoder and the guidance
  network's forward and backward (``∇_{x_t} log h``), each captured once per input shape and replayed. At batch 1
  their cost is the host launching kernels (the guidance network compiled took 8 ms on an H100 for about 1 ms of GPU
  work; the eager SDXL-Turbo call, profiled, 127 ms of host time for 35 ms of GPU work); a replay is one launch.
  ``guidance_gradient(network)`` is what the sampler calls: the graphed gradient of an accelerated network on CUDA,
  else the eager one.

``torch.compile`` compiles lazily, on the first call at each new shape: whoever serves requests calls the pipeline
once per shape at start-up (``studio.resources.Resources.warm_up`` does), so that no request waits for the compiler.
Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``) makes a second start-up cheaper. Everything here is
optional: ``accelerate(pipe, compile=False)`` only fuses and changes the memory format, and not calling it at all
leaves the pipeline as diffusers made it (the studio's ``--no-compile``).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref

import torch
import torch.utils._pytree as pytree
from torch import nn

from .diffusion_guidance import grad_log_h_of

log = logging.getLogger(__name__)

# Per model class, the class names of its repeated blocks (what ``ModelMixin.compile_repeated_blocks`` reads from
# ``_repeated_blocks``, which not every diffusers or transformers class declares).
REPEATED_BLOCKS: dict[str, tuple[str, ...]] = {
    "UNet2DConditionModel": ("BasicTransformerBlock",),
    "SD3Transformer2DModel": ("JointTransformerBlock",),
    "CLIPModel": ("CLIPEncoderLayer",),
}
RECOMPILE_LIMIT = 64  # graph variants dynamo may keep per compiled code (its default is 8)


def compile_regions(model: nn.Module, block_names: tuple[str, ...], **compile_kwargs) -> int:
    """``torch.compile`` every sub-module of ``model`` whose class name is in ``block_names``, in place (the
    module's ``forward`` is compiled; its weights stay where they are). Returns how many were compiled."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in block_names:
            module.compile(**compile_kwargs)
            count += 1
    return count


def _unwrapped(module: nn.Module | None) -> nn.Module | None:
    """The model inside the project's wrappers (``repeated_context.RepeatedContext``, ``studio.memo.Memo``, …): the
    first sub-module whose class ``REPEATED_BLOCKS`` names."""
    if module is None:
        return None
    return next((m for m in module.modules() if type(m).__name__ in REPEATED_BLOCKS), module)


def _diffusers_attention(model: nn.Module) -> bool:
    processors = getattr(model, "attn_processors", None)
    return bool(processors) and all(type(p).__module__.startswith("diffusers.") for p in processors.values())


class CudaGraphed:
    """``fn(*args, **kwargs)`` replayed from a CUDA graph captured at the first call of each signature (the shapes,
    dtypes and devices of its tensors, the values of everything else, in nested tuples, lists and dicts). Inputs are
    copied into the graph's own tensors and the outputs copied out, so callers keep ordinary tensors; one call at a
    time (a lock), on the caller's stream. A call with a tensor off CUDA, an argument that can't be a dictionary
    key, or while ``eligible()`` is false runs ``fn`` as it is; so does a signature whose capture failed (logged
    once) and any signature past the first ``MAX_GRAPHS``, so that odd shapes cannot fill the GPU with pools.

    A replay launches the whole call at once: for the small, launch-bound calls of one-step sampling (the UNet at
    batch 1, the VAE decoder, the guidance network's forward and backward) the host then no longer paces the GPU.
    Each signature keeps its own memory pool for the call's intermediates."""

    WARMUP = 3  # calls on a side stream before capture (cuDNN picks its algorithms, the compiler runs, memory settles)
    MAX_GRAPHS = 8  # signatures captured per function (the studio serves one or two batch sizes per model)

    def __init__(self, fn, eligible=lambda: True):
        self.fn, self.eligible = fn, eligible
        self.graphs: dict[tuple, tuple] = {}
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        leaves, spec = pytree.tree_flatten((args, kwargs))
        tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
        if not tensors or not self.capturable(tensors) or not self.eligible():
            return self.fn(*args, **kwargs)
        key = (spec, tuple((tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else x for x in leaves))
        try:
            hash(key)
        except TypeError:
            return self.fn(*args, **kwargs)
        with self.lock:
            if key not in self.graphs:
                if len(self.graphs) >= self.MAX_GRAPHS:
                    return self.fn(*args, **kwargs)
                try:
                    self.graphs[key] = self._capture(leaves, spec)
                except Exception as e:  # noqa: BLE001 - any capture failure: this signature runs eagerly from now on
                    log.warning("CUDA graph capture of %s failed, running it eagerly: %s", self.fn, e)
                    self.graphs[key] = None
            if self.graphs[key] is None:
                return self.fn(*args, **kwargs)
            static, out, graph = self.graphs[key]
            for s, x in zip(static, leaves):
                if isinstance(x, torch.Tensor):
                    s.copy_(x.detach())
            graph.replay()
            return pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)

    @staticmethod
    def capturable(tensors) -> bool:
        return all(t.is_cuda for t in tensors)

    def _capture(self, leaves, spec) -> tuple:
        static = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in leaves]
        args, kwargs = pytree.tree_unflatten(static, spec)
        side = torch.cuda.Stream(device=next(x for x in static if isinstance(x, torch.Tensor)).device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.fn(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the studio's other threads may use the GPU meanwhile; the capture records this stream only
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self.fn(*args, **kwargs)
        return static, out, graph


def _graphed_gradient(network: nn.Module) -> CudaGraphed:
    """``grad_log_h_of(network, …)`` from CUDA graphs while no parameter wants a gradient. Holds the network weakly:
    it is the key of ``_GRAPHED``, which must not keep it alive."""
    ref = weakref.ref(network)
    return CudaGraphed(lambda *args: grad_log_h_of(ref(), *args),
                       eligible=lambda: not any(p.requires_grad for p in ref().parameters()))


_GRAPHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # guidance network -> its graphed gradient


def guidance_gradient(network: nn.Module):
    """The function ``(x_t, text, t, β, η) -> (log h, ∇log h)`` the sampler calls: replayed from CUDA graphs when
    ``accelerate`` graphed this network, else ``grad_log_h_of`` eagerly."""
    graphed = _GRAPHED.get(network)
    return graphed if graphed is not None else functools.partial(grad_log_h_of, network)


def graph_method(obj, name: str) -> None:
    """Replay ``obj.name(...)`` from CUDA graphs when it runs without gradients (``CudaGraphed``), in place: an
    instance attribute in front of the class's method. Not for a method that ``torch.compile`` traces (a compiled
    module's ``forward``): graph the call around it instead."""
    if not isinstance(getattr(obj, name), CudaGraphed):
        setattr(obj, name, CudaGraphed(getattr(obj, name), eligible=lambda: not torch.is_grad_enabled()))


def fp8_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers of ``model``'s (or the model it wraps) repeated blocks (``REPEATED_BLOCKS``) that FP8 matmuls can take (both
    widths multiples of 16), by qualified name: what ``quantize_fp8`` converts. The layers outside the blocks (the
    patch and time embeddings, the final projection) stay in the model's dtype."""
    model = _unwrapped(model)
    names = REPEATED_BLOCKS.get(type(model).__name__, ())
    found = {}
    for block_name, block in model.named_modules():
        if type(block).__name__ in names:
            for name, layer in block.named_modules():
                if (isinstance(layer, nn.Linear) and layer.in_features % 16 == 0
                        and layer.out_features % 16 == 0):
                    found[f"{block_name}.{name}"] = layer
    return found


def fp8_unavailable(model_or_device) -> str | None:
    """Why a model (or any model on a device) can't run FP8 matmuls here: no torchao, or not on a GPU with FP8
    tensor cores (compute capability 8.9: Ada, Hopper and later); None when it can."""
    if isinstance(model_or_device, nn.Module):
        device = next(_unwrapped(model_or_device).parameters()).device
    else:
        device = torch.device(model_or_device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
        return f"FP8 matmuls need a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); the model is on {where}"
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        return "FP8 matmuls need torchao (pip install torchao, a build for this torch)"
    return None


def quantize_fp8(model: nn.Module) -> int:
    """Run ``fp8_linears(model)`` as FP8 (e4m3) matmuls, in place: the weights stored in FP8 with a scale per
    output row, the activations quantized per row on the fly (torchao's ``Float8DynamicActivationFloat8WeightConfig``
    with ``PerRow``), which ``torch.compile`` fuses into the kernels around them. Returns how many layers it
    converted; raises ``RuntimeError`` (``fp8_unavailable``'s reason) where it can't. Halves the blocks' weight
    memory; what it saves and how far the images move is measured by ``evaluations.benchmark_compile --variants
    fp8``."""
    reason = fp8_unavailable(model)
    if reason:
        raise RuntimeError(reason)
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    layers = set(fp8_linears(model).values())
    # set_inductor_config=False: torchao would otherwise turn on inductor's coordinate-descent tuning for the whole
    # process, which lengthens every later compile (with it on, the first FP8 run on an H100 did not finish compiling
    # SD3.5's blocks within its benchmark's time limit)
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    quantize_(_unwrapped(model), config, filter_fn=lambda module, _name: module in layers)
    return len(layers)


def accelerate(pipe=None, *, network: nn.Module | None = None, reward=None, compile: bool = True,
               fuse: bool = True, channels_last: bool = True, cuda_graphs: bool = True, fp8: bool = False,
               **compile_kwargs) -> list[str]:
    """Speed up ``pipe``, the guidance ``network`` and the ``reward`` used with it (any of them may be left out), in
    place; returns what was done, e.g. ``["fused qkv", "channels-last unet", "compiled 70 BasicTransformerBlock",
    …, "cuda-graphed unet"]``. ``compile_kwargs`` go to ``torch.compile`` (default ``fullgraph=True``, which fails
    on a graph break instead of running part of a block eagerly: right for a benchmark, while a server passes
    ``fullgraph=False``; ``backend="eager"`` checks the tracing alone). ``cuda_graphs`` (on CUDA, with or without
    ``compile``): a UNet-class pipeline's UNet and VAE decoder run from CUDA graphs when sampling, and the guidance
    network's gradient always (``CudaGraphed``); a transformer's large calls are not launch-bound, so flow
    pipelines are left to the compiler. A captured graph replays the weights it was captured with, where they were:
    don't move, offload, fuse or swap the models' modules (LoRA included) after the first call; load anew instead.
    ``fp8``: a bf16 denoiser's repeated blocks run their linear layers as FP8 matmuls (``quantize_fp8``: torchao,
    an Ada or Hopper GPU), which pays where those layers are most of the work (SD3.5-Large at 1024²: 1.12–1.14×
    on an H100); a denoiser in another dtype is left as it is."""
    done: list[str] = []
    denoiser = _unwrapped(getattr(pipe, "transformer", None) or getattr(pipe, "unet", None))
    if fp8 and denoiser is not None and (reason := fp8_unavailable(denoiser)):
        raise RuntimeError(reason)  # before anything is changed
    vae = getattr(pipe, "vae", None)
    if fuse and denoiser is not None and _diffusers_attention(denoiser):
        # the pipeline's own method fuses the VAE's attention too; SD3's pipeline has none, its transformer has
        (pipe if hasattr(pipe, "fuse_qkv_projections") else denoiser).fuse_qkv_projections()
        done.append("fused qkv")
    if fp8 and denoiser is not None:
        dtype = next(denoiser.parameters()).dtype
        if dtype == torch.bfloat16:
            done.append(f"fp8 {quantize_fp8(denoiser)} linear layers")
        else:  # torchao's per-row scales are made from bf16 weights (the toy presets are float32)
            done.append(f"fp8 skipped ({str(dtype).removeprefix('torch.')} weights; FP8 takes bf16 models)")
    unet = denoiser if type(denoiser).__name__ == "UNet2DConditionModel" else None
    if channels_last:
        for name, model in (("unet", unet), ("vae", vae), ("guidance network", network)):
            if model is not None:
                model.to(memory_format=torch.channels_last)
                done.append(f"channels-last {name}")
    if cuda_graphs:
        if network is not None and any(p.is_cuda for p in network.parameters()):
            _GRAPHED[network] = _graphed_gradient(network)
            done.append("cuda-graphed guidance gradient")
        if unet is not None and unet.device.type == "cuda":
            graph_method(unet, "forward")  # regional compilation compiles its blocks, never this forward
            graph_method(vae, "decode")  # around the decoder, which is compiled whole
            done += ["cuda-graphed unet", "cuda-graphed vae decode"]
    if not compile:
        return done
    # every batch size, guidance on or off and grad mode is a variant of a block's graph; past dynamo's default of
    # 8 a fullgraph compile fails hard instead of running eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    kwargs = {"fullgraph": True, **compile_kwargs}
    for model in (denoiser, getattr(reward, "model", None)):
        names = REPEATED_BLOCKS.get(type(model).__name__) if model is not None else None
        count = compile_regions(model, names, **kwargs) if names else 0
        if count:
            done.append(f"compiled {count} {'/'.join(names)}")
    if vae is not None:
        vae.decoder.compile(**kwargs)
        done.append("compiled vae decoder")
    if network is not None and network not in _GRAPHED:  # a graph replays eager kernels: nothing to compile then
        network.compile(**kwargs)
        done.append("compiled guidance network")
    return done
