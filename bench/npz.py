"""Sample files for `bench evaluate SAMPLES.npz`: `images` (uint8 N×28×28 or float N×1×28×28
in [-1, 1]) and optional `labels` (N ints in 0..9, the classes the images were asked to show)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

FORMAT = "images: uint8 N×28×28 or float N×1×28×28 in [-1, 1]; labels (optional): N ints in 0..9"


def _images(path: Path, images: np.ndarray) -> np.ndarray:
    uint8 = images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)
    floats = images.dtype.kind == "f" and images.ndim == 4 and images.shape[1:] == (1, 28, 28)
    if not (uint8 or floats):
        raise BenchError(f"{path}: images have dtype {images.dtype} and shape {images.shape}; expected {FORMAT}")
    if len(images) < 2:
        raise BenchError(f"{path}: {len(images)} image(s); FID and KID need at least 2 (use thousands)")
    if uint8:
        return images
    if not np.isfinite(images).all():
        raise BenchError(f"{path}: images contain NaN or inf; write finite values ({FORMAT})")
    low, high = float(images.min()), float(images.max())
    if low < -1 or high > 1:
        raise BenchError(f"{path}: float images range over [{low:.3g}, {high:.3g}], expected [-1, 1]; "
                         "rescale them (e.g. x * 2 - 1 for [0, 1] data) or save uint8 pixels")
    return np.rint((images[:, 0].astype(np.float64) + 1) * 127.5).astype(np.uint8)


def _labels(path: Path, labels: np.ndarray, n: int, key: str = "labels") -> np.ndarray:
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise BenchError(f"{path}: {key} have dtype {labels.dtype} and shape {labels.shape}; "
                         f"expected {n} integers in 0..9 (one per image) or no `{key}` key")
    if labels.min() < 0 or labels.max() > 9:
        raise BenchError(f"{path}: {key} range over {labels.min()}..{labels.max()}; expected 0..9")
    return labels.astype(np.int64)


def load_samples(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 N×28×28 images, int64 labels or None), or BenchError saying what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such file; pass the .npz written by your sampler ({FORMAT})")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise BenchError(f"{path}: not an .npz file numpy can read; save with np.savez(path, images=..., labels=...)"
                         ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise BenchError(f"{path}: a single .npy array, not an .npz; save with np.savez(path, images=..., labels=...)")
    with loaded as npz:
        if "images" not in npz.files:
            raise BenchError(f"{path}: no `images` array (found: {', '.join(npz.files) or 'none'}); "
                             f"save with np.savez(path, images=..., labels=...) ({FORMAT})")
        try:
            images = _images(path, npz["images"])
            labels = _labels(path, npz["labels"], len(images)) if "labels" in npz.files else None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            # Object arrays (pickles are refused) and damaged members end up here.
            raise BenchError(f"{path}: cannot read its arrays ({e}); save plain numeric arrays with np.savez") from None
    return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels)


def load_codes(path: str | os.PathLike) -> torch.Tensor | None:
    """The optional `codes` of a samples file that load_samples accepted: the categorical codes an
    InfoGAN-like generator drew each image from (scored as eval/code_accuracy), or None."""
    with np.load(Path(path), allow_pickle=False) as npz:
        if "codes" not in npz.files:
            return None
        n = len(npz["images"])
        return torch.from_numpy(_labels(Path(path), npz["codes"], n, "codes"))


def save_samples(path: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor | None = None,
                 codes: torch.Tensor | None = None) -> None:
    """Write uint8 N×28×28 images (and labels, codes) in the format load_samples reads."""
    if images.dtype != torch.uint8:
        raise ValueError(f"save_samples wants uint8 pixels, got {images.dtype}")
    arrays = {"images": images.detach().cpu().reshape(-1, 28, 28).numpy()}
    for key, values in (("labels", labels), ("codes", codes)):
        if values is not None:
            arrays[key] = values.detach().cpu().to(torch.int64).numpy()
    np.savez(path, **arrays)
