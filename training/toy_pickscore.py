"""``toy-pickscore``: a tiny ``transformers.CLIPModel`` + ``CLIPProcessor`` trained like PickScore, so the code that
scores with ``yuvalkirstain/PickScore_v1`` scores with it unchanged.

Stage 1, contrastive pretraining (CLIP): renders of the training split and their captions, symmetric InfoNCE over
the batch. Stage 2, PickScore's objective: for a caption ``y`` and two images with labels ``(p0, p1)``,

    L = − Σ_i p_i · log softmax_i( s · cos(text(y), image(x_i)) ),   s = exp(logit_scale)

(a tie is p = (0.5, 0.5)), with a small weight on the stage-1 loss so text and image stay aligned on captions the
pairs never show. Both stages resume from their saved state (``--work``) and stop at ``--max-minutes``.

    python -m training toy-pickscore --pairs data/toy-pickapic.parquet --work runs/toy-pickscore \\
        --export checkpoints/toy-pickscore
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from .clip_tokenizer import save_slim_clip_tokenizer
from .configs import PickScoreTrainConfig
from .graphed_step import set_lr
from .loop import TrainingLoop, apply_gradients, lr_at
from .preference_data import LoadReport, iter_pairs
from .toy_pipeline import toy_accelerator
from .toy_pool import ScenePool, batch_rng

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_config() -> CLIPConfig:
    """ViT (64×64, 8×8 patches) and a CLIP text transformer with the real 49,408-token vocabulary."""
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=0),
        vision_config=dict(image_size=64, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=6,
                           num_attention_heads=4),
        projection_dim=64,
    )


def new_processor(work: Path, source: Path | None = None) -> CLIPProcessor:
    """The laion CLIP tokenizer pads with "!"; images are already 64×64, so resize and crop are identities. The
    tokenizer files come from ``source`` (an exported toy-pickscore folder) when it has them, so no open_clip is
    needed, else from open_clip's vocabulary."""
    folder = work / "tokenizer"
    if not (folder / "vocab.json").exists():
        if source is not None and (Path(source) / "vocab.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
                if (Path(source) / name).exists():
                    shutil.copyfile(Path(source) / name, folder / name)  # a link is copied as the file it names
        else:
            save_slim_clip_tokenizer(folder, pad_token="!")
    images = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
                                image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return CLIPProcessor(image_processor=images, tokenizer=CLIPTokenizer.from_pretrained(folder))


class PairSet:
    """Decoded preference pairs held as uint8 tensors on the training device."""

    def __init__(self, source: Path, tokenizer, device):
        report = LoadReport()
        rows = list(iter_pairs(source, report=report))
        print(f"{source}: {report}")
        self.images = torch.from_numpy(np.stack([np.stack([np.asarray(r.image_0), np.asarray(r.image_1)])
                                                 for r in rows])).to(device)  # N x 2 x H x W x 3
        self.ids = tokenizer([r.caption for r in rows], padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt").input_ids.to(device)
        self.labels = torch.tensor([[r.label_0, r.label_1] for r in rows], dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.labels)


def pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> CLIP-normalised float NCHW (what ``CLIPImageProcessor`` does to a 64×64 image)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class Scorer(torch.nn.Module):
    """Normalised embeddings and the logit scale behind one forward (what accelerate wraps)."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids):
        image = self.model.get_image_features(pixel_values=pixel_values)
        text = self.model.get_text_features(input_ids=input_ids)
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1), self.model.logit_scale.exp()


def contrastive_loss(image, text, scale, ids) -> torch.Tensor:
    """Symmetric InfoNCE; captions that are identical in the batch count as positives of each other."""
    logits = scale * image @ text.T
    same = (ids[:, None, :] == ids[None, :, :]).all(-1).float()
    target = same / same.sum(-1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def preference_loss(image_0, image_1, text, scale, labels) -> torch.Tensor:
    """PickScore: cross-entropy between softmax(s·cos(text, image_i)) and the vote's labels."""
    logits = scale * torch.stack([(image_0 * text).sum(-1), (image_1 * text).sum(-1)], dim=-1)
    return -(labels * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def run(cfg: PickScoreTrainConfig) -> bool:
    """Train (or resume) both stages; export (a paused run too, marked unfinished). True when done."""
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    set_seed(cfg.seed)
    accelerator = toy_accelerator()
    device = accelerator.device
    with accelerator.main_process_first():
        processor = new_processor(cfg.work, cfg.init_from)
    model = (CLIPModel.from_pretrained(cfg.init_from, dtype=torch.float32) if cfg.init_from is not None
             else CLIPModel(clip_config()))
    scorer = Scorer(model)
    opt = torch.optim.AdamW(scorer.parameters(), lr=cfg.lr, weight_decay=0.05)
    scorer, opt = accelerator.prepare(scorer, opt)
    total = cfg.pretrain_steps + cfg.steps
    loop = TrainingLoop(accelerator, cfg.work, total, deadline, name="toy-pickscore", save_every=cfg.save_every,
                        hint="lower --lr and resume")
    if cfg.pool is not None and cfg.pool.exists():
        pool = ScenePool.load(cfg.pool, device, processor.tokenizer)
    else:
        pool = ScenePool.render(cfg.pool_size, cfg.seed + 1, cfg.workers, device, processor.tokenizer)
    pairs = None  # read when the preference stage starts, so pretraining can run while the pairs are made

    def step_fn(step: int) -> tuple[torch.Tensor, dict]:
        nonlocal pairs
        rng = batch_rng(cfg.seed, step, rank=accelerator.process_index)
        set_lr(opt, lr_at(cfg.lr, step, total, warmup=200))
        idx = torch.from_numpy(rng.integers(0, len(pool), cfg.batch_size)).to(device)
        ids = pool.token_ids[idx]
        with accelerator.autocast():
            image, text, scale = scorer(pixels(pool.images[idx]), ids)
            loss = contrastive_loss(image.float(), text.float(), scale.float(), ids)
            logs = {"clip": loss.detach()}
            if step > cfg.pretrain_steps:
                pairs = pairs or PairSet(cfg.pairs, processor.tokenizer, device)
                j = torch.from_numpy(rng.integers(0, len(pairs), cfg.batch_size // 2)).to(device)
                images = pairs.images[j].flatten(0, 1)  # x0, x1 interleaved
                image_p, text_p, scale_p = scorer(pixels(images), pairs.ids[j].repeat_interleave(2, dim=0))
                pref = preference_loss(image_p[0::2].float(), image_p[1::2].float(), text_p[0::2].float(),
                                       scale_p.float(), pairs.labels[j])
                loss = pref + cfg.clip_weight * loss
                logs["pref"] = pref.detach()
        apply_gradients(accelerator, loss, opt, clip=scorer.parameters())
        with torch.no_grad():  # CLIP clamps the temperature at 100
            accelerator.unwrap_model(scorer).model.logit_scale.clamp_(0, float(np.log(100)))
        return loss, logs

    def export_scorer(step: int, finished: bool) -> None:
        source = {} if cfg.init_from is None else {"init_from": str(cfg.init_from)}
        export(accelerator.unwrap_model(scorer).model, processor, cfg.export, cfg.work, step=step, finished=finished,
               **source)

    finished = loop.run(step_fn, export=export_scorer if cfg.export is not None else None)
    accelerator.print(json.dumps({"done": finished, "step": loop.step,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return finished


def export(model: CLIPModel, processor: CLIPProcessor, dest: Path, work: Path, **info) -> None:
    """fp16 safetensors + the processor, with the slim tokenizer (vocab.json + merges.txt, as on the hub)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.to("cpu", torch.float16)
    for sub in (model.config.text_config, model.config.vision_config):  # a model loaded in fp32 keeps fp32 there
        sub.dtype = torch.float16
    model.save_pretrained(dest, safe_serialization=True)
    processor.save_pretrained(dest)
    for name in ("tokenizer.json",):
        (dest / name).unlink(missing_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(work / "tokenizer" / name, dest / name)
    (dest / "training.json").write_text(json.dumps(info, indent=1))
