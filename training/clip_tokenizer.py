"""Build the real CLIP BPE tokenizer offline, from the ``bpe_simple_vocab_16e6.txt.gz`` open_clip ships.

The vocabulary is built exactly as CLIP builds it (256 byte symbols, the same with ``</w>``, then one token per
merge, then the two special tokens), and written as a ``transformers.CLIPTokenizer`` folder (vocab.json,
merges.txt, model_max_length 77), so the toy pipelines tokenize like SDXL-Turbo and SD3.5 do.

    python -m training tokenizer --out checkpoints/clip-tokenizer
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from importlib import resources
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # CLIP's merge count: a 49408-token vocabulary


def bundled_bpe_path() -> Path:
    path = Path(str(resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"))
    if not path.is_file():
        raise FileNotFoundError(f"open_clip_torch does not ship {path.name} here ({path}); reinstall open_clip_torch")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_vocab_and_merges(bpe_path: Path | None = None) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_path or bundled_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def save_clip_tokenizer(out: str | Path, *, pad_token: str = "<|endoftext|>", bpe_path: Path | None = None) -> Path:
    """Write a CLIPTokenizer folder. SDXL's first tokenizer pads with <|endoftext|>, its second (and open_clip)
    with "!" (id 0)."""
    from transformers import CLIPTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(bpe_path)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(
        str(out / "vocab.json"),
        str(out / "merges.txt"),
        pad_token=pad_token,
        model_max_length=77,
    )
    tok.save_pretrained(out)
    return out


def save_slim_clip_tokenizer(out: str | Path, *, pad_token: str = "<|endoftext|>") -> Path:
    """Like ``save_clip_tokenizer`` but keeps only the files the hub's SDXL tokenizer folders have (vocab.json,
    merges.txt and the two small configs), without the 3.6 MB ``tokenizer.json`` that transformers rebuilds from
    them on load."""
    out = save_clip_tokenizer(out, pad_token=pad_token)
    (Path(out) / "tokenizer.json").unlink(missing_ok=True)
    return out


SHARED_FILES = ("vocab.json", "merges.txt")


def link_shared_vocabulary(checkpoints: str | Path, shared: str = "clip-bpe") -> list[Path]:
    """Store the BPE files once. Every ``vocab.json`` / ``merges.txt`` under ``checkpoints`` that is byte-identical
    to the one in ``checkpoints/<shared>/`` becomes a relative symbolic link to it (the four toy-pipeline
    tokenizer folders and toy-pickscore all hold the same 1.4 MB). Loaders read through the links, and
    ``from_pretrained`` on a preset folder works as before. The first copy found seeds ``<shared>/``.
    Returns the files replaced by links."""
    root = Path(checkpoints)
    store = root / shared
    replaced = []
    for name in SHARED_FILES:
        for path in sorted(root.rglob(name)):
            if path.parent == store or path.is_symlink():
                continue
            target = store / name
            if not target.exists():
                store.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            if path.read_bytes() != target.read_bytes():
                continue  # a different vocabulary: keep its own copy
            path.unlink()
            path.symlink_to(os.path.relpath(target, path.parent))
            replaced.append(path)
    return replaced
