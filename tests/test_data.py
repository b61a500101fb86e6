"""Data sets: IDX reading, lookup and download (offline, with a fake server), loaders, augmentation."""

import gzip
import hashlib
import io

import numpy as np
import pytest
import torch

import xnorpp.data as D
from xnorpp.data import datasets as DS
from xnorpp.data import sources as S


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb")) as f:
        f.write(data)
    return data


def make_idx_folder(folder, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img, lbl = S.IDX_FILES[split]
        arrays[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        write_idx(folder / (img + (".gz" if gz else "")), arrays[split][0])
        write_idx(folder / (lbl + (".gz" if gz else "")), arrays[split][1])
    return arrays


def test_registry_facts_and_unknown_name():
    assert set(D.DATASETS) >= {"fashion-mnist", "mnist", "cifar10", "imagenet", "digits", "synthetic"}
    assert D.DATASETS["fashion-mnist"].input_size == (28, 28) and D.DATASETS["imagenet"].num_classes == 1000
    with pytest.raises(ValueError, match="unknown data set 'fmnist'.*fashion-mnist.*synthetic"):
        D.get_dataset("fmnist")
    with pytest.raises(ValueError, match="unknown split"):
        D.get_dataset("digits", "val")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_under_data_root(tmp_path, gz):
    arrays = make_idx_folder(tmp_path, gz=gz)
    for split in ("train", "test"):
        ds = D.get_dataset("fashion-mnist", split, data_root=tmp_path, download=False)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays[split][0].astype(np.uint8)))
        assert torch.equal(ds.labels, torch.from_numpy(arrays[split][1].astype(np.int64)))
        x, y = ds[3]
        expected = (arrays[split][0][3] / 255.0 - 0.2860) / 0.3530
        np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_missing_files_are_named_with_how_to_get_them(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(D.get_dataset("fashion-mnist", "train", data_root=tmp_path, download=False)) == 12  # complete
    with pytest.raises(FileNotFoundError) as err:
        D.get_dataset("fashion-mnist", "test", data_root=tmp_path, download=False)
    text = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in text and "train-images" not in text.split("\n")[0]
    assert "apt-get install dataset-fashion-mnist" in text and "--data-root" in text


def test_truncated_idx_file_is_refused(tmp_path):
    make_idx_folder(tmp_path)
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        D.get_dataset("fashion-mnist", "train", data_root=tmp_path, download=False)


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    src = tmp_path / "server"
    src.mkdir()
    make_idx_folder(src)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(S.IDX_SOURCES, "mnist", ("https://example.invalid/", md5))
    monkeypatch.setattr(S.urllib.request, "urlopen",
                        lambda url, timeout=None: io.BytesIO(files[url.rsplit("/", 1)[1]]))
    root = tmp_path / "root"
    root.mkdir()
    ds = D.get_dataset("mnist", "test", data_root=root)
    assert len(ds) == 5 and (root / "t10k-images-idx3-ubyte.gz").is_file()
    # a corrupted download is refused and leaves nothing behind
    bad = dict(md5, **{"train-images-idx3-ubyte.gz": "0" * 32})
    monkeypatch.setitem(S.IDX_SOURCES, "mnist", ("https://example.invalid/", bad))
    root2 = tmp_path / "root2"
    root2.mkdir()
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):
        D.get_dataset("mnist", "train", data_root=root2)
    assert not any(p.name.startswith("train-images") for p in root2.iterdir())


def test_digits_split_is_disjoint_and_complete():
    from sklearn.datasets import load_digits
    tr, te = D.get_dataset("digits", "train"), D.get_dataset("digits", "test")
    assert len(tr) + len(te) == len(load_digits().target) and tr.images.shape[1:] == (1, 8, 8)
    keys = {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(tr.images, tr.labels)}
    overlap = sum(tuple(x.flatten().tolist()) + (int(y),) in keys for x, y in zip(te.images, te.labels))
    assert overlap < 10  # the digits set has a few exact duplicates, no more


def test_loader_is_reproducible_and_shards_exactly():
    ds = D.get_dataset("synthetic", "train", num_samples=103)
    a = [y for _, y in D.make_loader(ds, 10, train=True, seed=3)]
    b = [y for _, y in D.make_loader(ds, 10, train=True, seed=3)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    loader = D.make_loader(ds, 10, train=True, seed=3)
    loader.set_epoch(1)
    assert not all(torch.equal(p, q) for p, q in zip(a, [y for _, y in loader]))
    # evaluation shards over 3 ranks cover every image exactly once
    labels = torch.cat([torch.cat([y for _, y in D.make_loader(ds, 7, train=False, rank=r, world_size=3)])
                        for r in range(3)])
    assert len(labels) == 103 and torch.equal(labels.sort().values, ds.labels.sort().values)


def test_random_crop_and_flip_are_shifted_copies():
    torch.manual_seed(0)
    images = torch.rand(16, 1, 10, 10)
    out = DS._augment(images, 2, True, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):
        found = any(torch.equal(out[i], cand) for dy in range(5) for dx in range(5)
                    for crop in [padded[i, :, dy:dy + 10, dx:dx + 10]] for cand in (crop, crop.flip(-1)))
        assert found


def test_imagenet_folders_and_transforms(tmp_path):
    from PIL import Image
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (300, 260), (10, 200, 30)).save(tmp_path / split / cls / "x.png")
    tr = D.get_dataset("imagenet", "train", data_root=tmp_path)
    te = D.get_dataset("imagenet", "test", data_root=tmp_path)
    assert tr[0][0].shape == (3, 224, 224) and te[0][0].shape == (3, 224, 224) and len(tr.classes) == 2
    with pytest.raises(FileNotFoundError, match="val"):
        D.get_dataset("imagenet", "test", data_root=tmp_path / "train")


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        D.get_dataset("cifar10", "train", data_root=tmp_path, download=False)


# -- the torch-free sources that `xnorpp run` reads too ------------------------------------------------------

def test_sources_import_no_torch():
    import subprocess
    import sys

    code = ("import sys\nsys.modules['torch'] = None\n"
            "from xnorpp.data.sources import load_arrays, DATASETS\n"
            "x, y = load_arrays('synthetic', 'test', num_samples=7)\n"
            "print(x.shape, x.dtype, y.dtype, sorted(DATASETS) == sorted(%r))" % sorted(D.DATASETS))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(7, 1, 16, 16) float32 int64 True"


def test_synthetic_upsampling_is_pytorchs_bilinear():
    from xnorpp.data.sources import _upsample_bilinear

    coarse = np.random.default_rng(1).random((3, 2, 4, 5))
    ours = _upsample_bilinear(_upsample_bilinear(coarse, 16, axis=2), 13, axis=3)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(16, 13), mode="bilinear",
                                             align_corners=False).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def _cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("version", ["bin", "py"])
def test_cifar10_reads_both_versions_of_the_files(tmp_path, version):
    import pickle

    from xnorpp.data.sources import read_cifar10

    folder = tmp_path / f"cifar-10-batches-{version}"
    folder.mkdir()
    expected = {}
    for split, stems in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        parts = [_cifar_arrays(4, seed) for seed in range(len(stems))]
        for stem, (images, labels) in zip(stems, parts):
            if version == "bin":  # one label byte, then 3072 pixel bytes, per image
                records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(len(images), -1)], 1)
                records.tofile(folder / f"{stem}.bin")
            else:  # the python version: a pickled dict with bytes keys, as the files from Toronto are
                with open(folder / stem, "wb") as f:
                    pickle.dump({b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}, f, protocol=2)
        expected[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        images, labels = read_cifar10(tmp_path, split)
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
    ds = D.get_dataset("cifar10", "test", tmp_path, download=False)
    assert len(ds) == 4 and ds.images.shape[1:] == (3, 32, 32)


def test_cifar10_python_batches_cannot_run_code(tmp_path):
    import pickle

    from xnorpp.data.sources import read_cifar10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": print, b"labels": []}, f)  # a global other than numpy's array rebuilders
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        read_cifar10(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        read_cifar10(tmp_path / "nowhere", "test")


def test_image_folder_is_read_as_torchvision_evaluates(tmp_path):
    from PIL import Image
    from torchvision import transforms

    from xnorpp.data.sources import list_images, read_images

    rng = np.random.default_rng(0)
    for cls, size in (("cat", (300, 220)), ("dog", (64, 64)), ("dog", (500, 260))):
        (tmp_path / cls).mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / cls / f"{size[0]}x{size[1]}.png")
    paths, labels, classes = list_images(tmp_path)
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 1, 1]
    ours = read_images(paths, (56, 56), 3)
    reference = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(56), transforms.ToTensor()])
    for path, image in zip(paths, ours):
        with Image.open(path) as img:
            np.testing.assert_allclose(image, reference(img.convert("RGB")).numpy(), rtol=0, atol=1e-6)
    assert read_images(paths[:1], (56, 56), 1).shape == (1, 1, 56, 56)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        list_images(tmp_path / "empty")
