"""The settings of every ``python -m training`` command that has them, one dataclass each. The command line is made
from these fields (``options.add_options``): each default and help text is written here once. This module imports
nothing heavy, so building the command line does not load torch or diffusers; each trainer imports its config from
here (``training.toy_base.ToyTrainConfig`` is this ``ToyTrainConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .options import option

PAUSE_HELP = "pause (state saved) after this long; run the same command again to resume"
POOL_HELP = "cached render pool (.npz); rendered and saved if missing"


@dataclass
class ToyTrainConfig:
    """``toy-base``: a toy base pipeline (VAE, then denoiser with both text encoders) on the renderer."""

    preset: str = option(help="the toy pipeline to train", choices=("toy-sdxl", "toy-sd3"))
    work: Path = option(help="folder for resumable training state")
    export: Path | None = option(None, help="where to save the diffusers pipeline folder")
    vae_steps: int = option(3000, help="steps of the VAE stage")
    steps: int = option(20000, help="steps of the denoiser stage")
    batch_size: int = option(128, help="images per step and process")
    vae_lr: float = option(1e-3, help="the VAE stage's peak learning rate")
    lr: float = option(3e-4, help="the denoiser stage's learning rate")
    kl_weight: float = option(1e-4, help="weight of the VAE's KL term per latent element")
    ema_decay: float = option(0.9995, help="decay of the denoiser's weight EMA (what is exported)")
    seed: int = option(0, help="random seed")
    workers: int = option(4, help="render processes when the pool is rendered")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(1000, help="save the state every so many steps")
    init_from: Path | None = option(None, help="start from an exported pipeline folder")
    fresh_denoiser: bool = option(False, help="with --init-from: keep its VAE and text encoders, build the denoiser "
                                              "anew from toy_architectures")
    pool: Path | None = option(None, help=POOL_HELP)
    pool_size: int = option(200_000, help="renders in the pool when it is rendered")
    stats_samples: int = option(4096, help="images used to measure the latent scale and shift")
    time_shift: float = option(1.0, help="flow presets: train on shifted sigmas k*s/(1+(k-1)*s), as the sampler's "
                                         "shift visits them")
    uniform_time_share: float = option(0.0, help="flow presets: share of each batch whose sigma is drawn uniformly "
                                                 "instead of logit-normal")
    logit_mean: float = option(0.0, help="flow only: mean of the logit-normal the sigmas are drawn from (SD3: 0; "
                                         "> 0 trains more at high noise)")
    adaln_zero: bool = option(False, help="with --fresh-denoiser on toy-sd3: DiT's adaLN-Zero initialisation of the "
                                          "new transformer")
    anneal: bool = option(False, help="cosine-decay the learning rate to 0 over this run (a final polishing call)")

    def __post_init__(self):
        if not 0.0 <= self.uniform_time_share <= 1.0:
            raise ValueError(f"--uniform-time-share must lie in [0, 1], got {self.uniform_time_share}")
        if self.adaln_zero and not (self.fresh_denoiser and self.preset == "toy-sd3"):
            raise ValueError("--adaln-zero initialises a new toy-sd3 transformer: use it with --preset toy-sd3 "
                             "--fresh-denoiser")


@dataclass
class DecoderTrainConfig:
    """``toy-decoder``: the VAE decoder of an exported toy pipeline, its encoder frozen."""

    init_from: Path = option(help="the exported pipeline folder to improve")
    work: Path = option(help="folder for resumable training state")
    export: Path | None = option(None, help="where to save the pipeline with the new decoder")
    steps: int = option(20000, help="training steps")
    batch_size: int = option(256, help="images per step and process")
    lr: float = option(3e-4, help="learning rate after warm-up")
    ema_decay: float = option(0.999, help="decay of the decoder's weight EMA (what is exported)")
    seed: int = option(0, help="random seed")
    workers: int = option(4, help="render processes when the pool is rendered")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(1000, help="save the state every so many steps")
    pool: Path | None = option(None, help=POOL_HELP)
    pool_size: int = option(200_000, help="renders in the pool when it is rendered")

    def __post_init__(self):
        self.init_from, self.work = Path(self.init_from), Path(self.work)
        if not (self.init_from / "vae" / "config.json").exists():
            raise FileNotFoundError(f"--init-from {self.init_from}: not an exported pipeline folder "
                                    "(no vae/config.json)")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--steps and --batch-size must be positive and --lr > 0")


@dataclass
class DistillConfig:
    """``toy-distill``: a few-step student of toy-sd3, by reflow on the teacher's own guided samples."""

    init_from: Path = option(help="the exported toy-sd3 folder: the teacher, and the student's starting point")
    work: Path = option(help="folder for the pairs and resumable training state")
    export: Path | None = option(None, help="where to save the pipeline with the student")
    pairs: int = option(200_000, help="teacher samples to distil from")
    teacher_steps: int = option(16, help="the teacher's Euler steps per sample")
    teacher_guidance: float = option(4.0, help="the teacher's classifier-free guidance scale")
    student_steps: int = option(4, help="the step count the student is meant for")
    steps: int = option(8000, help="training steps")
    batch_size: int = option(1024, help="pairs per step and process")
    lr: float = option(2e-4, help="peak learning rate")
    ema_decay: float = option(0.999, help="decay of the student's weight EMA (what is exported)")
    sampler_share: float = option(0.5, help="share of each batch trained at the sigmas the student's sampler visits")
    logit_mean: float = option(0.0, help="the other sigmas' logit-normal mean")
    pair_batch: int = option(4096, help="teacher samples made at once")
    seed: int = option(0, help="random seed")
    workers: int = option(4, help="render processes when the pool is rendered")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(1000, help="save the state every so many steps")
    pool: Path | None = option(None, help="cached render pool (.npz): its captions are used")
    pool_size: int = option(200_000, help="renders in the pool when it is rendered")

    def __post_init__(self):
        self.init_from, self.work = Path(self.init_from), Path(self.work)
        if not (self.init_from / "transformer" / "config.json").exists():
            raise FileNotFoundError(f"--init-from {self.init_from}: not an exported SD3-class pipeline folder "
                                    "(no transformer/config.json)")
        if min(self.pairs, self.teacher_steps, self.student_steps, self.steps, self.batch_size, self.pair_batch) < 1:
            raise ValueError("--pairs, --teacher-steps, --student-steps, --steps, --batch-size and --pair-batch must "
                             "be positive")
        if not 0.0 <= self.sampler_share <= 1.0:
            raise ValueError(f"--sampler-share must lie in [0, 1], got {self.sampler_share}")
        if self.lr <= 0 or self.teacher_guidance < 0:
            raise ValueError("--lr must be > 0 and --teacher-guidance >= 0")


@dataclass
class PickScoreTrainConfig:
    """``toy-pickscore``: the toy PickScore reward (contrastive pretraining, then PickScore's objective)."""

    work: Path = option(help="folder for resumable training state")
    pairs: Path = option(help="Pick-a-Pic-format parquet file or folder")
    export: Path | None = option(None, help="where to save the CLIPModel + CLIPProcessor folder")
    pool: Path | None = option(None, help="cached render pool (.npz) for the contrastive stage")
    pool_size: int = option(100_000, help="renders made for the contrastive stage when there is no pool")
    pretrain_steps: int = option(3000, help="steps of the contrastive stage")
    steps: int = option(3000, help="steps of the preference stage")
    batch_size: int = option(512, help="images per contrastive batch; pairs per preference batch is half of it")
    lr: float = option(1e-3, help="peak learning rate")
    clip_weight: float = option(0.2, help="weight of the contrastive loss in stage 2")
    seed: int = option(0, help="random seed")
    workers: int = option(8, help="render processes when the pool is rendered")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(500, help="save the state every so many steps")
    init_from: Path | None = option(None, help="continue from an exported toy-pickscore folder (fresh optimiser; "
                                               "e.g. --pretrain-steps 0)")


@dataclass
class CacheConfig:
    """``guidance-cache``: latents, text embeddings and rewards of a Pick-a-Pic-format set."""

    pairs: Path = option(help="Pick-a-Pic-format parquet file or folder (or hub id)")
    out: Path = option(help="the cache folder")
    model: str = option("toy-sdxl", help="the pipeline whose VAE and text encoders encode")
    reward: str = option("toy-pickscore", help="the reward that scores every image")
    models: tuple[str, ...] = option((), help="keep only images of these model_0/model_1 names (none: all)",
                                     nargs="*")
    chunk: int = option(2048, help="pairs per cached chunk file")
    batch: int = option(256, help="images encoded at once")
    limit: int | None = option(None, help="read at most this many pairs")
    consistency_draws: int = option(0, help="also cache K noisings and the frozen UNet's residual per preferred "
                                            "image, so that `guidance --consistency-source cache` never calls the UNet")


@dataclass
class GuidanceTrainConfig:
    """``guidance``: the guidance network, ``L = L_guidance + η · L_consistency``."""

    cache: Path = option(help="a guidance cache (guidance-cache)")
    work: Path = option(help="folder for resumable training state")
    export: Path | None = option(None, help="where to save the trained network")
    model: str = option("toy-sdxl", help="the pretrained pipeline (its UNet is frozen)")
    size: str = option("toy", help="the network's size", choices=("toy", "toy-wide", "sdxl"))
    steps: int = option(20000, help="training steps")
    batch_size: int = option(256, help="per process")
    lr: float = option(5e-4, help="peak learning rate")
    beta_range: tuple[float, float] = option((0.05, 5.0), help="β is drawn log-uniformly from this range",
                                                metavar=("LO", "HI"))
    eta_range: tuple[float, float] = option((0.0, 2.0), help="η is drawn uniformly from this range (0 for a "
                                               "quarter)", metavar=("LO", "HI"))
    seed: int = option(0, help="random seed")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(1000, help="save the state every so many steps")
    init_from: Path | None = option(None, help="continue from an exported network (fresh optimiser) when --work is "
                                               "new")
    consistency_fraction: float = option(1.0, help="compute L_consistency (one pretrained-UNet call per row) on this "
                                                   "share of the expected eligible rows (preferred, η > 0), a fixed "
                                                   "number per step, weighted so the loss is unbiased; below 1 it "
                                                   "saves UNet calls at full scale")
    focus: float = option(0.0, help="share of the rows trained at the sampler's own timesteps (the rest uniform "
                                    "over t)")
    consistency_source: str = option("unet", help="L_consistency's ε_θ(x_t): from the frozen UNet each step, or the "
                                                  "cache's fixed draws", choices=("unet", "cache"))
    readout_steps: int = option(0, help="warm start: the first N steps regress β·log h onto the reward at "
                                        "t < --readout-t-max")
    readout_t_max: int = option(50, help="the readout's timesteps: uniform in [0, readout_t_max)")
    cuda_graph: bool = option(True, help="run each step eagerly instead of replaying a captured CUDA graph (one "
                                         "CUDA process)", flag="--no-cuda-graph")


@dataclass
class GuidanceControlConfig:
    """``guidance-control``: the guidance network trained through its own sampler, ``E[−r + β κ ½ Σ‖δ_t‖²]``."""

    work: Path = option(help="folder for resumable training state")
    export: Path | None = option(None, help="where to save the trained network")
    model: str = option("toy-sdxl", help="the pretrained SDXL-class pipeline (frozen)")
    reward: str = option("toy-pickscore", help="a differentiable reward (frozen)")
    init_from: Path | None = option(None, help="start from an exported network (e.g. one trained with `guidance`)")
    size: str = option("toy", help="the network's size without --init-from", choices=("toy", "toy-wide", "sdxl"))
    captions: Path | None = option(None, help="a text file of training prompts, one per line (default: the toy "
                                              "world's training captions)")
    steps: int = option(1000, help="training steps")
    batch_size: int = option(32, help="images per step and process")
    lr: float = option(3e-4, help="peak learning rate")
    kl_weight: float = option(0.25, help="κ: the price of the guidance's change of the noise prediction, per unit "
                                         "of β")
    pair_temperature: float = option(0.0, help="T > 0: the reward term compares each guided image with the "
                                               "pretrained sampler's from the same noise, −T·log σ((r − r_base)/T), "
                                               "so pairs that already win weigh less (0: the plain reward −r)")
    beta_range: tuple[float, float] = option((0.05, 5.0), help="β is drawn log-uniformly from this range",
                                                metavar=("LO", "HI"))
    eta_range: tuple[float, float] = option((0.0, 2.0), help="η is drawn uniformly from this range (the network "
                                               "learns not to depend on it)", metavar=("LO", "HI"))
    seed: int = option(0, help="random seed")
    max_minutes: float = option(1e9, help=PAUSE_HELP)
    save_every: int = option(100, help="save the state every so many steps")


@dataclass
class GuidanceEvalConfig:
    """``guidance-eval``: held-out losses of a trained guidance network."""

    cache: Path = option(help="a guidance cache of held-out images")
    network: Path = option(help="the exported guidance network")
    model: str = option("toy-sdxl", help="the pretrained pipeline the network guides")
    betas: tuple[float, ...] = option((0.5, 1.0, 2.0), help="the β values to evaluate at")
    seed: int = option(0, help="random seed of the draws (t, ε)")
    block: int = option(256, help="rows per block (blocks are dealt to processes round-robin)")
    out: Path | None = option(None, help="also write the report (JSON) here")
