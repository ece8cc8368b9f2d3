"""load_glyphs: the contract of load_digits, class-disjoint splits, the glyph checks, the cache.

Only matplotlib's own fonts, a few at a time, one render each. Every test writes its
cache under tmp_path (the KERAS_DML_CACHE variable), never into the user's home.
"""
import os
import warnings

import matplotlib
import numpy as np
import pytest

from keras_dml.data import glyphs, load_glyphs

FONT_DIR = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
SANS, SERIF, MONO = (os.path.join(FONT_DIR, name) for name in
                     ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono-Bold.ttf"))
FONTS = [SANS, SERIF, MONO]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(glyphs.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "glyphs"


@pytest.mark.parametrize("by", ["character", "font"])
def test_contract_of_load_digits(by):
    fonts = FONTS + [os.path.join(FONT_DIR, "DejaVuSerif-Bold.ttf")]
    images, labels, meta = load_glyphs("test", by=by, fonts=fonts, renders=1, return_metadata=True)
    assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    assert labels.dtype == np.int32 and labels.shape == (len(images),)
    assert sorted(set(labels.tolist())) == list(range(labels.max() + 1))
    assert set(meta) == {"character", "font"}
    assert all(len(meta[key]) == len(images) for key in meta)
    names = meta["character"] if by == "character" else meta["font"]
    # One label per class name and one class name per label.
    assert len(set(zip(labels.tolist(), names.tolist()))) == labels.max() + 1 == len(set(names.tolist()))


def test_image_size_and_renders():
    images, labels = load_glyphs("train", fonts=FONTS[:2], renders=2, image_size=20)
    assert images.shape[1:] == (20, 20, 1)
    assert np.all(np.bincount(labels) % 2 == 0)  # two renders of each glyph


def test_same_seed_same_images_and_another_seed_others():
    first = load_glyphs("train", fonts=FONTS, renders=1, seed=3, cache_dir=None)[0]
    again = load_glyphs("train", fonts=FONTS, renders=1, seed=3)[0]
    np.testing.assert_array_equal(first, again)
    other = load_glyphs("train", fonts=FONTS, renders=1, seed=4)[0]
    assert first.shape == other.shape and np.abs(first - other).mean() > 0.01


def test_splits_are_class_disjoint_and_families_stay_together():
    sides = {split: load_glyphs(split, by="character", fonts=FONTS, renders=1, return_metadata=True)[2]
             for split in glyphs.SPLITS}
    train, test = (set(sides[s]["character"].tolist()) for s in glyphs.SPLITS)
    assert train and test and not train & test
    assert len(train | test) > 100
    fonts = [os.path.join(FONT_DIR, name) for name in sorted(os.listdir(FONT_DIR)) if name.startswith("DejaVu")]
    by_font = {split: set(load_glyphs(split, by="font", fonts=fonts, renders=1, characters="AbgQ5",
                                      return_metadata=True)[2]["font"].tolist()) for split in glyphs.SPLITS}
    assert by_font["train"] and by_font["test"] and not by_font["train"] & by_font["test"]

    def families(names):
        return {name.split("-")[0].removesuffix(".ttf") for name in names}

    # DejaVu Sans, Sans Mono, Serif: each family's regular, bold and italic on one side.
    assert not families(by_font["train"]) & families(by_font["test"])


def test_no_two_classes_share_a_render_in_a_font():
    _, _, meta = load_glyphs("train", fonts=FONTS, renders=1, return_metadata=True)
    _, _, test_meta = load_glyphs("test", fonts=FONTS, renders=1, return_metadata=True)
    for path in FONTS:
        font = glyphs._open_font(path, 32)
        name = os.path.basename(path)
        kept = sorted(set(meta["character"][meta["font"] == name].tolist())
                      | set(test_meta["character"][test_meta["font"] == name].tolist()))
        plain = np.stack([glyphs._draw(font, char, 32) for char in kept]).reshape(len(kept), -1).astype(float)
        ink = plain.sum(1)
        differences = np.abs(plain[:, None] - plain[None]).sum(-1) / (ink[:, None] + ink[None])
        np.fill_diagonal(differences, 1.0)
        assert differences.min() >= glyphs.SAME_RENDER, name


def characters_drawn(fonts, characters):
    """Every character load_glyphs keeps for `fonts`, over both splits."""
    return {char for split in glyphs.SPLITS
            for char in load_glyphs(split, fonts=fonts, characters=characters, renders=1,
                                    return_metadata=True)[2]["character"].tolist()}


def test_glyphs_drawn_alike_keep_the_first_character():
    # DejaVu Serif draws Greek kappa and Cyrillic ka with one glyph: the first listed stays.
    assert characters_drawn([SERIF], "ABκк") == {"A", "B", "κ"}
    assert characters_drawn([SERIF], "ABкκ") == {"A", "B", "к"}
    # DejaVu Sans draws them differently: both stay.
    assert characters_drawn([SANS], "ABκк") == {"A", "B", "κ", "к"}
    assert not set(glyphs.DEFAULT_CHARACTERS) & set(glyphs.CONFUSABLES)
    assert {"A", "a", "0", "Ж", "λ"} <= set(glyphs.DEFAULT_CHARACTERS)


def test_placeholder_and_symbol_fonts_are_left_out():
    last_resort = os.path.join(FONT_DIR, "LastResortHE-Regular.ttf")  # a placeholder for every codepoint
    symbols = os.path.join(FONT_DIR, "cmex10.ttf")  # big delimiters at the codepoints of letters
    fonts = [path for path in (last_resort, symbols) if os.path.exists(path)]
    if not fonts:
        pytest.skip("this matplotlib ships neither LastResortHE nor cmex10")
    with pytest.warns(UserWarning, match="cmex10") if symbols in fonts else warnings.catch_warnings():
        _, _, meta = load_glyphs("test", fonts=FONTS + fonts, characters=glyphs.LATIN + glyphs.DIGITS,
                                 renders=1, return_metadata=True)
    assert set(meta["font"].tolist()) == {os.path.basename(path) for path in FONTS}


def test_default_fonts_leave_out_their_symbol_fonts_silently():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, meta = load_glyphs("train", characters=glyphs.LATIN, renders=1, return_metadata=True)
    assert not [w for w in caught if issubclass(w.category, glyphs.SkippedFontWarning)]
    assert "cmex10.ttf" not in set(meta["font"].tolist()) and "DejaVuSans.ttf" in set(meta["font"].tolist())


def test_cache_is_reused_and_invalidated_by_settings(cache_in_tmp, monkeypatch):
    first = load_glyphs("train", fonts=FONTS[:2], renders=1)[0]
    files = os.listdir(cache_in_tmp)
    assert len(files) == 1 and files[0].endswith(".npz")

    def no_rendering(*args):
        raise AssertionError("rendered again instead of reading the cache")

    with monkeypatch.context() as patch:
        patch.setattr(glyphs, "_render_all", no_rendering)
        np.testing.assert_array_equal(load_glyphs("train", fonts=FONTS[:2], renders=1)[0], first)
        load_glyphs("test", by="font", fonts=FONTS[:2], renders=1)  # same renders, another view
        with pytest.raises(AssertionError, match="rendered again"):
            load_glyphs("train", fonts=FONTS[:2], renders=1, image_size=24)
        with pytest.raises(AssertionError, match="rendered again"):
            load_glyphs("train", fonts=FONTS[:2], renders=1, seed=1)
    load_glyphs("train", fonts=FONTS[:2], renders=1, cache_dir=cache_in_tmp / "elsewhere")
    assert len(os.listdir(cache_in_tmp / "elsewhere")) == 1


def test_unreadable_cache_is_rendered_again(cache_in_tmp):
    first = load_glyphs("train", fonts=FONTS[:2], renders=1)[0]
    (path,) = cache_in_tmp.iterdir()
    path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable glyph cache"):
        again = load_glyphs("train", fonts=FONTS[:2], renders=1)[0]
    np.testing.assert_array_equal(first, again)
    with np.load(path) as rewritten:  # both splits' renders, readable again
        assert rewritten["images"].shape[1:] == (32, 32) and len(rewritten["images"]) > len(first)


@pytest.mark.parametrize("kwargs, name", [
    ({"fonts": []}, "fonts"),
    ({"by": "style"}, "by"),
    ({"split": "val"}, "split"),
    ({"image_size": 8}, "image_size"),
    ({"renders": 0}, "renders"),
    ({"seed": -1}, "seed"),
    ({"fonts": [os.path.join(FONT_DIR, "DejaVuSansDisplay.ttf")]}, "fonts"),  # no letters at all
    ({"fonts": [SANS], "by": "font"}, "fonts"),  # one font: one class
    ({"characters": "a"}, "characters"),
])
def test_bad_input_names_the_argument(kwargs, name):
    kwargs = {"fonts": FONTS[:1], "renders": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        load_glyphs(**kwargs)


def test_folder_without_fonts_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("no fonts here")
    with pytest.raises(ValueError, match="fonts"):
        load_glyphs(fonts=[tmp_path])
    with pytest.raises(ValueError, match="fonts"):
        load_glyphs(fonts=[tmp_path / "missing.ttf"])


def test_corrupt_font_file_is_skipped_with_a_warning(tmp_path):
    broken = tmp_path / "Broken.ttf"
    broken.write_bytes(b"not a font" * 10)
    with pytest.warns(UserWarning, match="Broken.ttf"):
        _, _, meta = load_glyphs(fonts=[broken, SANS, SERIF], renders=1, return_metadata=True)
    assert "Broken.ttf" not in set(meta["font"].tolist())


def test_groups_each_character_in_one_group_and_each_group_on_one_side():
    sides = {split: load_glyphs(split, by="group", group_size=3, fonts=FONTS, renders=1, return_metadata=True)
             for split in ("train", "test")}
    groups_of = {}  # character -> the set of (split, label) it was seen with
    for split, (images, labels, meta) in sides.items():
        assert len(images) == len(labels) == len(meta["character"])
        for label in np.unique(labels):
            characters = set(meta["character"][labels == label].tolist())
            assert len(characters) == 3  # a class is 3 characters: its modes
            for c in characters:
                groups_of.setdefault(c, set()).add((split, int(label)))
    assert all(len(seen) == 1 for seen in groups_of.values())  # one group, on one side
    train, test = (set(sides[s][2]["character"].tolist()) for s in ("train", "test"))
    assert train and test and not train & test
    # The groups are the documented deterministic draw of the characters present.
    drawn = glyphs.character_groups(sorted(train | test), 3)
    assert set(drawn) == train | test
    for images, labels, meta in sides.values():
        names = {drawn[c] for c in meta["character"][labels == 0].tolist()}
        assert len(names) == 1


@pytest.mark.parametrize("kwargs, name", [
    ({"by": "group", "group_size": 1}, "group_size"),
    ({"by": "group", "group_size": 0}, "group_size"),
    ({"by": "group", "group_size": 3, "characters": "abcde"}, "group_size"),  # 5 characters: one group of 3
    ({"by": "group", "split": "pretrain"}, "pretrain"),
    ({"by": "character", "group_size": 4}, "group_size"),
])
def test_bad_group_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_glyphs(**{"fonts": FONTS[:1], "renders": 1, **kwargs})
