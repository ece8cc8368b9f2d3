"""load_glyphs(split="pretrain"): characters apart from every glyph split, by Unicode and by their renders.

The split is rendered once for the module (matplotlib's fonts, one render each); the
checks compare its undistorted glyphs with the metric-learning characters' glyphs in
every font, by a measure of their own (not the one the split was chosen by).
"""
import os
import unicodedata

import numpy as np
import pytest

from keras_dml.data import glyphs, load_glyphs

METRIC = set(glyphs.DEFAULT_CHARACTERS)  # the train, validation and test characters


@pytest.fixture(scope="module")
def pretrain():
    images, labels, meta = load_glyphs("pretrain", renders=1, return_metadata=True)
    return images, labels, meta


@pytest.fixture(scope="module")
def undistorted(pretrain):
    """Blurred undistorted renders (flat) of the pretraining glyphs and of the metric characters, per font."""
    _, _, meta = pretrain
    paths = {os.path.basename(path): path for path in glyphs.font_files()}
    rows = {"pretrain": [], "metric": []}
    for name in sorted(set(meta["font"].tolist())):
        font = glyphs._open_font(paths[name], 32)
        chars = sorted(set(meta["character"][meta["font"] == name].tolist()))
        rows["pretrain"] += [(c, name, glyphs._draw(font, c, 32)) for c in chars]
        rows["metric"] += [(c, name, image) for c, image in glyphs._kept_glyphs(font, glyphs.DEFAULT_CHARACTERS, 32).items()]

    def stack(entries):
        images = glyphs._blur(np.stack([image for _, _, image in entries]).astype(np.float64) / 255.0)
        return (images.reshape(len(entries), -1), np.array([c for c, _, _ in entries]),
                np.array([f for _, f, _ in entries]))

    return stack(rows["pretrain"]), stack(rows["metric"])


def _relative_squared(a, b):
    """`|a - b|^2 / (|a|^2 + |b|^2)` of every row pair: 0 the same image, 1 no overlap."""
    sa, sb = (a ** 2).sum(1), (b ** 2).sum(1)
    return (sa[:, None] + sb[None, :] - 2.0 * a @ b.T) / (sa[:, None] + sb[None, :])


def test_the_split_is_large_and_each_character_is_drawn_by_enough_fonts(pretrain):
    images, labels, meta = pretrain
    assert images.shape[1:] == (32, 32, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    chars, fonts_per_char = np.unique(meta["character"], return_counts=True)
    assert len(chars) >= 500 and labels.max() + 1 == len(chars)
    assert fonts_per_char.min() >= glyphs.MIN_PRETRAIN_FONTS  # one render each: images per character = fonts
    assert len(set(zip(meta["character"].tolist(), meta["font"].tolist()))) == len(images)


def test_no_character_is_a_metric_one_or_a_variant_of_one(pretrain):
    _, _, meta = pretrain
    chars = set(meta["character"].tolist())
    assert not chars & METRIC and not chars & set(glyphs.CONFUSABLES) and not chars & set(glyphs.UNICODE_LOOKALIKES)
    for char in chars:
        parts = unicodedata.normalize("NFKD", char)
        assert not set(parts) & METRIC, char  # no é (e + accent), no 𝐞 (bold e)
        assert not any(unicodedata.category(p) == "Nd" for p in parts), char
        assert not any(w in unicodedata.name(char) for w in ("LATIN", "GREEK", "CYRILLIC")), char


@pytest.mark.parametrize("char", ["é", "𝐞", "ℓ", "Ⅎ", "①", "²", "Ս", "ո", "∑", "€", "A", "\ufffd"])
def test_variants_and_look_alikes_are_refused(char):
    assert not glyphs._unrelated(char, METRIC)


@pytest.mark.parametrize("char", ["→", "╬", "ა", "Ծ", "≠", "♣"])
def test_unrelated_symbols_and_scripts_are_candidates(char):
    assert glyphs._unrelated(char, METRIC)


def test_no_render_is_a_near_duplicate_of_a_metric_character_in_its_font(undistorted):
    (pre, pre_chars, pre_fonts), (met, _, met_fonts) = undistorted
    for font in set(pre_fonts.tolist()):
        a, b = pre[pre_fonts == font], met[met_fonts == font]
        nearest = np.concatenate([(np.abs(a[i:i + 64, None, :] - b[None]).sum(-1)
                                   / (a[i:i + 64].sum(1)[:, None] + b.sum(1)[None, :])).min(1)
                                  for i in range(0, len(a), 64)])
        assert nearest.min() >= glyphs.NEAR_DUPLICATE, (font, pre_chars[pre_fonts == font][nearest.argmin()])


def test_no_render_is_nearer_a_metric_character_in_any_font_than_metric_characters_are_to_each_other(undistorted):
    # The bar: the 5% nearest pairs of two different metric characters (l and I, O and 0
    # in one font...). A pretraining glyph may not be that close to any metric glyph.
    (pre, pre_chars, _), (met, met_chars, _) = undistorted
    between_metric = _relative_squared(met, met)
    between_metric[met_chars[:, None] == met_chars[None, :]] = np.inf
    bar = np.quantile(between_metric.min(1), 0.05)
    nearest = np.concatenate([_relative_squared(pre[i:i + 2048], met).min(1) for i in range(0, len(pre), 2048)])
    assert nearest.min() > bar, (pre_chars[nearest.argmin()], nearest.min(), bar)


def test_almost_every_glyph_looks_more_like_its_character_in_other_fonts_than_like_a_metric_glyph(undistorted):
    # The split's own vote (squared distance, metric glyphs of other fonts) holds for every
    # glyph; by this test's measure (relative, metric glyphs of any font) a few marks and
    # strokes (a diaeresis, a solidus, double integrals in one font: 0.2% today) come
    # nearer to some metric glyph than to their own character drawn by another font.
    (pre, pre_chars, pre_fonts), (met, _, _) = undistorted
    to_metric = np.concatenate([_relative_squared(pre[i:i + 2048], met).min(1) for i in range(0, len(pre), 2048)])
    to_own = np.full(len(pre), np.inf)
    for char in set(pre_chars.tolist()):
        rows = np.flatnonzero(pre_chars == char)
        between = _relative_squared(pre[rows], pre[rows])
        between[pre_fonts[rows][:, None] == pre_fonts[rows][None, :]] = np.inf
        to_own[rows] = between.min(1)
    assert (to_own >= to_metric).mean() < 0.005, sorted(set(pre_chars[to_own >= to_metric].tolist()))


def test_glyphs_a_font_draws_as_another_character_are_left_out(pretrain):
    # Computer Modern's copyright sign is its glyph "Phi", its degree sign "fl" (cmmi10: "gamma").
    _, _, meta = pretrain
    pairs = set(zip(meta["character"].tolist(), meta["font"].tolist()))
    assert ("©", "DejaVuSans.ttf") in pairs
    assert not {("©", "cmr10.ttf"), ("°", "cmr10.ttf"), ("°", "cmmi10.ttf"), ("®", "cmb10.ttf")} & pairs


def test_a_known_look_alike_would_fail_the_render_checks(undistorted):
    # The checks can fail: Armenian seh drawn by DejaVu Sans is Latin u.
    (_, _, _), (met, met_chars, met_fonts) = undistorted
    font = glyphs._open_font(os.path.join(os.path.dirname(glyphs.font_files()[0]), "DejaVuSans.ttf"), 32)
    seh = glyphs._blur(glyphs._draw(font, "ս", 32)[None].astype(np.float64) / 255.0).reshape(1, -1)
    u = met[(met_chars == "u") & (met_fonts == "DejaVuSans.ttf")]
    assert glyphs._difference(seh, u).min() < glyphs.NEAR_DUPLICATE


def test_fonts_that_draw_no_character_ten_times_leave_no_pretraining_split():
    fonts = [os.path.join(os.path.dirname(glyphs.font_files()[0]), name) for name in ("DejaVuSans.ttf", "cmr10.ttf")]
    with pytest.raises(ValueError, match=r"fewer than two characters for split='pretrain'.*10 fonts"):
        load_glyphs("pretrain", fonts=fonts, renders=1)


def test_pretrain_takes_character_classes_only():
    with pytest.raises(ValueError, match="split='pretrain'.*by='character'.*by='font'"):
        load_glyphs("pretrain", by="font")
    with pytest.raises(ValueError, match="split"):
        load_glyphs("pretraining")
