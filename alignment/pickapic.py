"""Preference pairs in the Pick-a-Pic v1 column layout: write them, and read them back (the toy set, the studio's
vote export or the real ``yuvalkirstain/pickapic_v1``) with one loader that skips and counts broken rows.

Columns written: ``caption, jpg_0, jpg_1, label_0, label_1, model_0, model_1, image_0_uid, image_1_uid,
best_image_uid, has_label, are_different, ranking_id, user_id`` (JPEG bytes in ``jpg_*``; labels 1/0, or 0.5/0.5
for a tie), as in Pick-a-Pic v1.

    write_pickapic([dict(caption=..., image_0=..., image_1=..., label_0=1.0, label_1=0.0)], "pairs.parquet")
    for pair in iter_pairs("pairs.parquet"): ...

The one home of the format: the trainers (``training``) read it, the studio's vote export writes it.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "image_0_uid", "image_1_uid",
           "best_image_uid", "has_label", "are_different", "ranking_id", "user_id")


@dataclass
class PreferencePair:
    caption: str
    image_0: Image.Image
    image_1: Image.Image
    label_0: float
    label_1: float
    model_0: str = ""
    model_1: str = ""


@dataclass
class LoadReport:
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) or "none"
        return f"read {self.read} rows, kept {self.kept}, skipped: {reasons}"


def jpeg_bytes(image: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_pickapic(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows with keys caption, image_0, image_1 (PIL), label_0, label_1, model_0, model_1 as Pick-a-Pic v1."""
    import pandas as pd

    records = []
    for i, r in enumerate(rows):
        jpg_0, jpg_1 = jpeg_bytes(r["image_0"]), jpeg_bytes(r["image_1"])
        uid_0, uid_1 = hashlib.sha1(jpg_0).hexdigest(), hashlib.sha1(jpg_1).hexdigest()
        best = uid_0 if r["label_0"] > r["label_1"] else uid_1 if r["label_1"] > r["label_0"] else ""
        records.append(dict(caption=r["caption"], jpg_0=jpg_0, jpg_1=jpg_1, label_0=float(r["label_0"]),
                            label_1=float(r["label_1"]), model_0=r.get("model_0", ""), model_1=r.get("model_1", ""),
                            image_0_uid=uid_0, image_1_uid=uid_1, best_image_uid=best, has_label=1,
                            are_different=int(uid_0 != uid_1), ranking_id=i, user_id=r.get("user_id", 0)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame.from_records(records, columns=list(COLUMNS)).to_parquet(path, index=False)
    return path


def _decode(blob) -> Image.Image:
    if isinstance(blob, dict):  # datasets' Image feature
        blob = blob.get("bytes")
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image.convert("RGB")


REQUIRED = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


def _hub_id(source: str) -> bool:
    """Whether ``source`` can be a hub data set id (``owner/name``) rather than a local path."""
    return (source.count("/") == 1 and not source.startswith((".", "/", "~"))
            and not source.endswith((".parquet", "/")))


def _parquet(f: Path):
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(f)
    except Exception as e:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid, OSError) become one message
        raise ValueError(f"{f} can't be read as a parquet file ({type(e).__name__}: {str(e)[:200]})") from e
    missing = [c for c in REQUIRED if c not in file.schema_arrow.names]
    if missing:
        raise ValueError(f"{f} is not in the Pick-a-Pic layout: it has no column {', '.join(missing)}")
    return file


def _rows(source: str | Path, split: str) -> Iterator[dict]:
    path = Path(source)
    if path.exists():
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        for f in files:
            for batch in _parquet(f).iter_batches(batch_size=256):
                yield from batch.to_pylist()
        return
    if not _hub_id(str(source)):
        raise FileNotFoundError(f"no such file or folder: {str(source)!r} (nor is it a hub data set id, owner/name)")
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"{source!r} is not a local file; reading a hub data set needs `pip install datasets`") from e
    yield from datasets.load_dataset(str(source), split=split, streaming=True)


def iter_pairs(source: str | Path, split: str = "train", limit: int | None = None,
               report: LoadReport | None = None) -> Iterator[PreferencePair]:
    """Pairs from a Pick-a-Pic-format parquet file or folder, or a hub data set id (streamed). Rows with a missing
    caption, an undecodable image or unusable labels are skipped and counted in ``report``."""
    report = report if report is not None else LoadReport()
    for row in _rows(source, split):
        if limit is not None and report.kept >= limit:
            return
        report.read += 1
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            report.skipped["missing caption"] += 1
            continue
        try:
            label_0, label_1 = float(row["label_0"]), float(row["label_1"])
        except (KeyError, TypeError, ValueError):
            report.skipped["bad label"] += 1
            continue
        if not (0 <= label_0 <= 1 and 0 <= label_1 <= 1 and abs(label_0 + label_1 - 1) < 1e-6):  # NaN fails too
            report.skipped["bad label"] += 1  # Pick-a-Pic's labels: (1, 0), (0, 1) or a tie (0.5, 0.5)
            continue
        try:
            image_0, image_1 = _decode(row["jpg_0"]), _decode(row["jpg_1"])
        except Exception:  # noqa: BLE001 - any decoding failure is a broken row
            report.skipped["undecodable image"] += 1
            continue
        report.kept += 1
        yield PreferencePair(caption, image_0, image_1, label_0, label_1, str(row.get("model_0") or ""),
                             str(row.get("model_1") or ""))
