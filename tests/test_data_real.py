"""Real-data readers on tiny files written in each official format (nothing downloads)."""
import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from data import DatasetFileError, DatasetFormatError, get_spec, load_dataset, load_glove, text_vocab
from data.sources import list_sources
from data.text_layout import TextOptions
from data.text_pipeline import STOP_WORDS, clean_text

FULL_WIDTH = TextOptions(padding="max_len")  # text batches max_len wide (by default: as wide as their longest text)

RNG = np.random.default_rng(0)


def _normalised(images: np.ndarray, name: str) -> torch.Tensor:
    spec = get_spec(name)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (torch.from_numpy(images).float() / 255 - mean) / std


# ---------------------------------------------------------------- vision ----

def _write_cifar(path: Path, images: np.ndarray, labels: list[int], label_key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"test", b"data": images.reshape(len(images), -1), label_key: labels,
             b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.fixture
def cifar10_root(tmp_path):
    images = RNG.integers(0, 256, (18, 3, 32, 32), dtype=np.uint8)
    labels = [i % 10 for i in range(18)]
    for b in range(5):
        _write_cifar(tmp_path / f"cifar-10-batches-py/data_batch_{b + 1}", images[3 * b:3 * b + 3],
                     labels[3 * b:3 * b + 3], b"labels")
    _write_cifar(tmp_path / "cifar-10-batches-py/test_batch", images[15:], labels[15:], b"labels")
    return tmp_path, images, labels


def test_cifar10_reads_pickled_batches_and_normalises(cifar10_root):
    root, images, labels = cifar10_root
    train = load_dataset("cifar10", "train", root=root, val_fraction=0.0)
    test = load_dataset("cifar10", "test", root=root)
    assert (len(train), len(test)) == (15, 3)
    x, y = train.get_batch(torch.arange(15))
    assert x.dtype == torch.float32 and x.shape == (15, 3, 32, 32)
    assert torch.allclose(x, _normalised(images[:15], "cifar10"), atol=1e-5)
    assert y.tolist() == labels[:15]
    tx, ty = test.get_batch(torch.arange(3))
    assert torch.allclose(tx, _normalised(images[15:], "cifar10"), atol=1e-5) and ty.tolist() == labels[15:]
    assert train.spec.kind == "real"


def test_cifar100_uses_fine_labels(tmp_path):
    images = RNG.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    for part, rows in (("train", slice(0, 4)), ("test", slice(4, 6))):
        path = tmp_path / "cifar-100-python" / part
        _write_cifar(path, images[rows], [97, 3, 50, 99][: rows.stop - rows.start], b"fine_labels")
    ds = load_dataset("cifar100", "train", root=tmp_path, val_fraction=0.0)
    assert ds.labels().tolist() == [97, 3, 50, 99]
    assert torch.allclose(ds[0][0], _normalised(images[:1], "cifar100")[0], atol=1e-5)


def test_cifar_garbage_or_wrong_keys_is_a_format_error(cifar10_root):
    root, _, _ = cifar10_root
    (root / "cifar-10-batches-py/data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetFormatError, match="data_batch_3") as info:
        load_dataset("cifar10", root=root)
    assert isinstance(info.value, DatasetFileError) and "https://" in str(info.value)
    _write_cifar(root / "cifar-10-batches-py/data_batch_3", np.zeros((2, 3, 32, 32), np.uint8), [0, 1], b"oops")
    with pytest.raises(DatasetFormatError, match="labels"):
        load_dataset("cifar10", root=root)


def _jpeg(path: Path, colour: tuple[int, int, int], side: int = 64) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), colour).save(path, "JPEG", quality=95)


@pytest.mark.parametrize("layout", ["official", "imagefolder"])
def test_tinyimagenet_reads_jpeg_folders_resized_to_32(tmp_path, layout):
    base = tmp_path / "tiny-imagenet-200"
    colours = {"n02": (250, 10, 10), "n01": (10, 10, 250)}  # sorted wnids: n01 -> 0, n02 -> 1
    for wnid, colour in colours.items():
        for i in range(2):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour)
    if layout == "official":
        _jpeg(base / "val/images/val_0.JPEG", colours["n02"])
        _jpeg(base / "val/images/val_1.JPEG", colours["n01"])
        (base / "val/val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t0\t0\t63\t63\n")
    else:
        _jpeg(base / "val/n02/val_0.JPEG", colours["n02"])
        _jpeg(base / "val/n01/val_1.JPEG", colours["n01"])
    train = load_dataset("tinyimagenet", "train", root=tmp_path, val_fraction=0.0)
    test = load_dataset("tinyimagenet", "test", root=tmp_path)
    x, y = train.get_batch(torch.arange(4))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    spec = get_spec("tinyimagenet")
    pixels = x * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)
    assert pixels[0, 2].mean() > 0.9 and pixels[0, 0].mean() < 0.1  # blue n01
    assert pixels[3, 0].mean() > 0.9  # red n02
    tx, ty = test.get_batch(torch.arange(2))
    assert sorted(ty.tolist()) == [0, 1] and tx.shape == (2, 3, 32, 32)
    assert list((tmp_path / ".cache").glob("tinyimagenet-*.pt"))  # decoded once, cached


def test_tinyimagenet_bad_annotation_is_a_format_error(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    _jpeg(base / "train/n01/images/a.JPEG", (0, 0, 0))
    _jpeg(base / "val/images/v.JPEG", (0, 0, 0))
    (base / "val/val_annotations.txt").write_text("v.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DatasetFormatError, match="val_annotations.txt"):
        load_dataset("tinyimagenet", root=tmp_path)


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    images = RNG.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    for name, rows, labels in (("train", slice(0, 3), [10, 1, 9]), ("test", slice(3, 5), [2, 10])):
        scipy_io.savemat(tmp_path / f"{name}_32x32.mat",
                         {"X": images[rows].transpose(2, 3, 1, 0), "y": np.array(labels, np.uint8).reshape(-1, 1)})
    train = load_dataset("svhn", "train", root=tmp_path, val_fraction=0.0)
    x, y = train.get_batch(torch.arange(3))
    assert y.tolist() == [0, 1, 9]
    assert torch.allclose(x, _normalised(images[:3], "svhn"), atol=1e-5)
    assert load_dataset("svhn", "test", root=tmp_path).labels().tolist() == [2, 0]


def _write_stl(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(path)  # STL-10 stores columns first


def test_stl10_reads_column_major_binaries_at_96(tmp_path):
    images = RNG.integers(0, 256, (5, 3, 96, 96), dtype=np.uint8)
    base = tmp_path / "stl10_binary"
    _write_stl(base / "train_X.bin", images[:3])
    np.array([1, 10, 5], np.uint8).tofile(base / "train_y.bin")
    _write_stl(base / "test_X.bin", images[3:])
    np.array([2, 3], np.uint8).tofile(base / "test_y.bin")
    train = load_dataset("stl10", "train", root=tmp_path, val_fraction=0.0, augment="basic")
    assert train.labels().tolist() == [0, 9, 4]
    test = load_dataset("stl10", "test", root=tmp_path)
    x, y = test.get_batch(torch.arange(2))
    assert x.shape == (2, 3, 96, 96) and y.tolist() == [1, 2]
    assert torch.allclose(x, _normalised(images[3:], "stl10"), atol=1e-5)
    assert train.get_batch([0])[0].shape == (1, 3, 96, 96)
    (base / "test_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DatasetFormatError, match="multiple of"):
        load_dataset("stl10", "test", root=tmp_path)


# ------------------------------------------------------------------ text ----

def _write_csv(path: Path, rows: list[list], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, **({"quoting": csv.QUOTE_NONE, "escapechar": "\\"}
                                                         if delimiter == "\t" else {}))
        writer.writerows(rows)


def test_cleaning_lowercases_deletes_tags_and_punctuation_without_a_space_and_drops_stop_words():
    """As DASCPL utils/nlp.py:177-188: deleted, not replaced, so words either side join."""
    assert clean_text("The <br /><b>Movie</b> was GREAT, wasn't it?! Don't-miss") == ["movie", "great", "wasnt",
                                                                                      "dontmiss"]
    assert clean_text("movie.<br />The end") == ["moviethe", "end"]
    assert "the" in STOP_WORDS and "don't" in STOP_WORDS and "movie" not in STOP_WORDS
    assert "dont" not in STOP_WORDS and "isnt" not in STOP_WORDS  # NLTK's list: the reference keeps them
    assert clean_text("The end", drop_stop_words=False) == ["the", "end"]


@pytest.fixture
def imdb_root(tmp_path):
    long_review = " ".join(f"w{i}" for i in range(400))
    rows = [["review", "sentiment"],
            ["A great film, great acting.<br />Great!", "positive"],
            ["Terrible plot; the acting was awful.", "negative"],
            [long_review, "positive"],
            ["Awful film.", "negative"],
            ["testonly great", "positive"],          # second half: the test split
            ["unseenword awful film", "negative"],
            ["great", "positive"],
            ["plot", "negative"]]
    _write_csv(tmp_path / "IMDB_Dataset.csv", rows)
    return tmp_path


IMDB_FIRST_WORDS = ["a", "terrible", "w0", "awful", "testonly", "unseenword", "great", "plot"]  # stop words kept


def test_imdb_splits_80_20_by_the_seed_and_builds_its_vocabulary_from_every_review(imdb_root):
    """DASCPL utils/nlp.py:69-87: vocabulary of all reviews, stop words kept, train_test_split(test_size=0.2)."""
    train = load_dataset("imdb", "train", root=imdb_root, seed=0, val_fraction=0.0, text=FULL_WIDTH)
    test = load_dataset("imdb", "test", root=imdb_root, seed=0, text=FULL_WIDTH)
    assert (len(train), len(test)) == (6, 2)  # ceil(0.2 x 8) test reviews
    order = np.random.RandomState(0).permutation(8)  # sklearn's train_test_split after np.random.seed(0)
    vocab = train.vocab
    x, y = train.get_batch(torch.arange(6))
    tx, ty = test.get_batch(torch.arange(2))
    assert [vocab[int(t)] for t in x[:, 0]] == [IMDB_FIRST_WORDS[i] for i in order[2:]]
    assert [vocab[int(t)] for t in tx[:, 0]] == [IMDB_FIRST_WORDS[i] for i in order[:2]]
    assert y.tolist() + ty.tolist() == [1 - i % 2 for i in list(order[2:]) + list(order[:2])]
    # great 4x, film 3x, awful 3x: ties keep the order of first occurrence (Counter.most_common)
    assert vocab[:5] == ["<pad>", "<unk>", "great", "film", "awful"]
    assert {"testonly", "unseenword", "the", "a", "actinggreat"} <= set(vocab)  # every review; stop words kept
    assert text_vocab("imdb", imdb_root) == vocab == test.vocab
    assert x.dtype == torch.long and x.shape == (6, 350)
    index = {w: i for i, w in enumerate(vocab)}
    first = list(order[2:]).index(0)  # "A great film, great acting.<br />Great!"
    assert x[first, :6].tolist() == [index[w] for w in ("a", "great", "film", "great", "actinggreat")] + [0]
    rows = torch.cat([x, tx])[(list(order[2:]) + list(order[:2])).index(2)]
    assert rows.tolist() == [index[f"w{i}"] for i in range(350)]  # the 400-word review truncated to max_len
    other = load_dataset("imdb", "test", root=imdb_root, seed=1, text=FULL_WIDTH).get_batch(torch.arange(2))[0]
    assert [vocab[int(t)] for t in other[:, 0]] == [IMDB_FIRST_WORDS[i] for i in np.random.RandomState(1).permutation(8)[:2]]
    dropped = text_vocab("imdb", imdb_root, TextOptions(imdb_stop_words="drop"))
    assert "the" not in dropped and "a" not in dropped and "great" in dropped


def test_imdb_wrong_columns_is_a_clear_error(tmp_path):
    _write_csv(tmp_path / "IMDB_Dataset.csv", [["text", "label"], ["good", "1"], ["bad", "0"]])
    with pytest.raises(DatasetFormatError, match=r"review.*sentiment|sentiment") as info:
        load_dataset("imdb", root=tmp_path)
    assert str(tmp_path / "IMDB_Dataset.csv") in str(info.value)


def test_agnews_reads_class_title_description(tmp_path):
    train = [["3", "Stocks rally", "Markets rose today."], ["4", "New chip", "A faster chip, markets say."],
             ["1", "Election markets", "Votes counted."], ["2", "Final", "Team wins final."]]
    _write_csv(tmp_path / "ag_news/train.csv", train)
    _write_csv(tmp_path / "ag_news/test.csv", [["2", "Cup", "Team loses."]])
    ds = load_dataset("agnews", "train", root=tmp_path, val_fraction=0.0, text=FULL_WIDTH)
    x, y = ds.get_batch(torch.arange(4))
    assert y.tolist() == [2, 3, 0, 1] and x.shape == (4, 60)
    assert ds.vocab[2] == "markets"  # title and description both count
    index = {w: i for i, w in enumerate(ds.vocab)}
    assert x[0, :4].tolist() == [index[w] for w in ("stocks", "rally", "markets", "rose")]
    tx, ty = load_dataset("agnews", "test", root=tmp_path, text=FULL_WIDTH).get_batch([0])
    assert ty.tolist() == [1] and tx[0, :4].tolist() == [1, index["team"], 1, 0]  # cup, loses: unseen


def test_agnews_wrong_columns_or_labels_are_clear_errors(tmp_path):
    _write_csv(tmp_path / "ag_news/train.csv", [["3", "only title"]])
    _write_csv(tmp_path / "ag_news/test.csv", [["1", "t", "d"]])
    with pytest.raises(DatasetFormatError, match=r"line 1: expected 3 columns"):
        load_dataset("agnews", root=tmp_path)
    _write_csv(tmp_path / "ag_news/train.csv", [["3", "t", "d"], ["7", "t", "d"]])
    with pytest.raises(DatasetFormatError, match=r"line 2: class index 7 outside 1..4"):
        load_dataset("agnews", root=tmp_path)


def test_dbpedia_reads_fourteen_classes(tmp_path):
    _write_csv(tmp_path / "dbpedia_csv/train.csv", [["14", "Title", "Some content here."], ["1", "Corp", "A company."]])
    _write_csv(tmp_path / "dbpedia_csv/test.csv", [["7", "Hill", "A mountain."]])
    ds = load_dataset("dbpedia14", "train", root=tmp_path, val_fraction=0.0, text=FULL_WIDTH)
    assert ds.labels().tolist() == [13, 0] and ds[0][0].shape == (400,)
    assert "title" not in ds.vocab and "content" in ds.vocab  # content only, as DASCPL utils/nlp.py:32-33
    assert load_dataset("dbpedia14", "test", root=tmp_path).labels().tolist() == [6]


def test_sst2_dev_is_the_test_split_and_max_len_is_15(tmp_path):
    long = " ".join(f"w{i}" for i in range(20))
    _write_csv(tmp_path / "SST-2/train.tsv", [["sentence", "label"], ["a gorgeous film", "1"], [long, "0"]], "\t")
    _write_csv(tmp_path / "SST-2/dev.tsv", [["sentence", "label"], ["gorgeous mess", "0"]], "\t")
    train = load_dataset("sst2", "train", root=tmp_path, val_fraction=0.0)
    x, y = train.get_batch(torch.arange(2))
    assert x.shape == (2, 15) and y.tolist() == [1, 0] and (x[1] > 1).all()  # truncated: all 15 kept ids
    tx, ty = load_dataset("sst2", "test", root=tmp_path).get_batch([0])
    assert ty.tolist() == [0] and tx[0, 0] == train.vocab.index("gorgeous") and tx[0, 1] == 1
    _write_csv(tmp_path / "SST-2/dev.tsv", [["sentence", "label"], ["x", "positive"]], "\t")
    with pytest.raises(DatasetFormatError, match="not 0 or 1"):
        load_dataset("sst2", "test", root=tmp_path)


def test_text_cache_is_reused_and_invalidated_by_a_changed_file(imdb_root):
    first = load_dataset("imdb", "train", root=imdb_root)
    entries = list((imdb_root / ".cache").glob("imdb-*.pt"))
    assert len(entries) == 1
    again = load_dataset("imdb", "train", root=imdb_root)
    assert torch.equal(first.tokens, again.tokens) and first.vocab == again.vocab
    path = imdb_root / "IMDB_Dataset.csv"
    _write_csv(path, [["review", "sentiment"], ["brandnew words", "positive"], ["x", "negative"]])
    os.utime(path, ns=(1, 1))
    assert "brandnew" in load_dataset("imdb", "train", root=imdb_root).vocab


# ------------------------------------------------- errors, root, noise ----

@pytest.mark.parametrize("source", list_sources(), ids=lambda s: s.name)
def test_missing_files_name_the_exact_path_and_url(tmp_path, source):
    with pytest.raises(DatasetFileError) as info:
        load_dataset(source.name, root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / source.files[0].rstrip("/")) in message and source.url in message
    assert source.url.startswith(("http://", "https://"))
    assert not (tmp_path / ".cache").exists()  # nothing synthetic, nothing written


def test_data_root_comes_from_the_environment(cifar10_root, monkeypatch):
    root, _, _ = cifar10_root
    monkeypatch.setenv("SCPLBENCH_DATA", str(root))
    assert len(load_dataset("cifar10", "test")) == 3
    monkeypatch.setenv("SCPLBENCH_DATA", str(root / "elsewhere"))
    with pytest.raises(DatasetFileError, match="elsewhere"):
        load_dataset("cifar10", "test")


def test_label_noise_and_val_split_on_real_data(cifar10_root):
    root, _, labels = cifar10_root
    clean = load_dataset("cifar10", "train", root=root, val_fraction=0.2, seed=1)
    noisy = load_dataset("cifar10", "train", root=root, val_fraction=0.2, seed=1, noise_rate=0.5)
    val = load_dataset("cifar10", "val", root=root, val_fraction=0.2, seed=1)
    assert (len(clean), len(val)) == (12, 3)
    assert set(clean.positions.tolist()).isdisjoint(val.positions.tolist())
    assert int((clean.labels() != noisy.labels()).sum()) == 6
    assert torch.equal(noisy.labels(), load_dataset("cifar10", "train", root=root, val_fraction=0.2, seed=1,
                                                    noise_rate=0.5).labels())
    assert val.labels().tolist() == [labels[i] for i in val.positions.tolist()]


# ----------------------------------------------------------------- GloVe ----

def test_glove_rows_align_with_vocab_ids(tmp_path):
    path = tmp_path / "glove" / "glove.6B.300d.txt"
    path.parent.mkdir()
    vectors = {"film": [1.0, 2.0, 3.0], "great": [4.0, 5.0, 6.0], "the": [7.0, 8.0, 9.0], "awful": [-1.0, 0.5, 2.5]}
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()))
    vocab = ["<pad>", "<unk>", "great", "awful", "film", "zzzmissing"]
    weights, coverage = load_glove(path, vocab, seed=0)
    assert weights.shape == (6, 3) and coverage == pytest.approx(3 / 4)
    for i, word in enumerate(vocab):
        if word in vectors:
            assert weights[i].tolist() == vectors[word], (i, word)
    assert (weights[0] == 0).all() and weights[5].abs().sum() > 0
    again, _ = load_glove(path, {w: i for i, w in enumerate(vocab)}, rows=10, seed=0)
    assert again.shape == (10, 3) and torch.equal(again[:6], weights)
    with pytest.raises(DatasetFileError, match="glove.6B.zip"):
        load_glove(tmp_path / "nothere.txt", vocab)
