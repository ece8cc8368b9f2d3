"""`load_glyphs`: letters, digits, Greek and Cyrillic rendered from real typefaces, split by class.

The embedded default dataset. Each image is one character drawn by one font with a
light random distortion (shift, rotation, scale, stroke weight), 32x32 grayscale by
default. Nothing is downloaded: the fonts are those matplotlib ships (DejaVu, STIX,
Computer Modern), or any font files and folders you pass.

Two tasks come from the same images:

- `by="character"`: a class is a character, its instances are fonts x renders; the
  test characters are never seen in training (zero-shot, as CUB-200 and Cars196).
- `by="font"`: a class is a font file (a typeface), its instances are characters x
  renders; the test fonts are never seen in training, and the regular, bold and italic
  of one family stay on the same side.
- `by="group"`: a class is a fixed group of `group_size` characters, its instances
  are those characters in every font: classes with several modes (the characters),
  each with many samples, as the class-collapse question needs. The groups are drawn
  once (characters ordered by a hash of the character, cut into consecutive groups) and
  split by group: the test groups' characters are never seen in training.

Checks instead of lists of names: a font lacking a character is skipped for it (its
cmap); a glyph that renders the font's placeholder (`.notdef` box), an almost empty
image, or the same image as several other characters (a "last resort" font) is left
out; a font whose glyphs mostly do not look like these characters in other fonts (a
symbol font with letters in its cmap) is left out (a `SkippedFontWarning` says so, unless
the fonts are matplotlib's default set); two characters that render the same
image in one font (Greek kappa and Cyrillic ka in DejaVu Serif) keep the first one
there. Characters that
look the same in most typefaces across scripts (Latin A, Greek Alpha, Cyrillic A) are
listed in `CONFUSABLES` and left out, so that no two classes share a glyph.

Renders are cached on disk after the first call (`$KERAS_DML_CACHE/glyphs/<key>.npz`,
default `~/.cache/keras_dml/glyphs`), keyed by the font files (path, size, mtime), the
characters and the rendering settings.

Example:

>>> from keras_dml.data import load_glyphs
>>> images, labels, meta = load_glyphs("test", return_metadata=True)  # doctest: +SKIP
>>> images.shape[1:], images.dtype, sorted(meta)  # doctest: +SKIP
((32, 32, 1), dtype('float32'), ['character', 'font'])
"""
import hashlib
import json
import numbers
import os
import tempfile
import unicodedata
import warnings
import zlib

import numpy as np

from keras_dml import checks

SPLITS = ("train", "test")  # the class splits; PRETRAIN is apart from both
PRETRAIN = "pretrain"
TASKS = ("character", "font", "group")
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc")
MIN_IMAGE_SIZE = 16
CACHE_ENV = "KERAS_DML_CACHE"
DEFAULT_GROUP_SIZE = 4  # characters per class with by="group"
RENDER_VERSION = 1  # bump when the rendering code changes (the settings below are in the cache key)


class SkippedFontWarning(UserWarning):
    """A font file left out: unreadable, or a symbol font (see the module docstring)."""


def _characters(*ranges):
    return "".join(chr(c) for first, last in ranges for c in range(first, last + 1))


LATIN = _characters((0x41, 0x5A), (0x61, 0x7A))
DIGITS = "0123456789"
GREEK = _characters((0x391, 0x3A1), (0x3A3, 0x3A9), (0x3B1, 0x3C9))
CYRILLIC = _characters((0x410, 0x44F)) + "\u0401\u0451"  # + Yo, yo
# Non-Latin characters drawn like an earlier character of the default set in most
# typefaces (Unicode's confusables among these scripts): left out of the default set.
CONFUSABLES = {
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "З": "3", "Г": "Γ", "П": "Π", "Ф": "Φ",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x",
}
DEFAULT_CHARACTERS = "".join(c for c in LATIN + DIGITS + GREEK + CYRILLIC if c not in CONFUSABLES)

# Where the glyph sits in the supersampled canvas: em size and baseline as fractions of
# the side, so that capitals, x-height letters, descenders and accents keep their
# relative size and position (x and X differ).
EM_SIZE = 0.72
BASELINE = 0.74
SUPERSAMPLE = 2
# Random distortion of each render: shift (fraction of the side), rotation (degrees),
# scale, and extra stroke width in supersampled pixels.
MAX_SHIFT = 0.08
MAX_ROTATION = 10.0
SCALE_RANGE = (0.85, 1.1)
STROKE_WIDTHS = (0, 1, 2)
# Checks on the undistorted render (pixel values in [0, 1]).
MIN_INK = 3.0  # summed intensity below this: an almost empty image
SAME_RENDER = 0.01  # relative L1 difference (see _difference) below this: the same image
MAX_SHARED_RENDER = 2  # more characters than this on one image: a placeholder
RECOGNITION_RANK = 5  # a glyph is recognised when its character is among the 5 nearest (of ~140)
MIN_RECOGNIZED = 0.6  # a font with a smaller share of recognised glyphs is a symbol font
# The pretraining split (see `_render_pretrain`): characters drawn by at least this many
# fonts, none closer than NEAR_DUPLICATE (`_difference` of 3x3-blurred undistorted
# renders in one font) to a metric-learning character, and none a variant or look-alike
# of one by its Unicode properties (`_unrelated`).
PRETRAIN_VERSION = 2  # bump when the pretraining split's checks change (in the cache key)
MIN_PRETRAIN_FONTS = 10
NEAR_DUPLICATE = 0.15
# Unicode general categories: letters, punctuation, maths, modifier and other symbols
# (not currency signs: most are letters with strokes, $ C-bar, Y-bar, B-bar).
PRETRAIN_CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sk", "So")
METRIC_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC", "COPTIC")
VARIANT_WORDS = ("DIGIT", "NUMBER", "NUMERAL", "FRACTION", "MATHEMATICAL", "FULLWIDTH", "HALFWIDTH", "CIRCLED",
                 "PARENTHESIZED", "SQUARED", "SUBSCRIPT", "SUPERSCRIPT", "MODIFIER", "SMALL CAPITAL", "N-ARY",
                 "TURNED", "REVERSED", "INVERTED", "SCRIPT", "BLACK-LETTER", "DOUBLE-STRUCK")
# Characters of matplotlib's fonts that pass the rules above but that Unicode's
# confusables (UTS #39, confusables.txt) list as look-alikes of a DEFAULT_CHARACTERS one.
UNICODE_LOOKALIKES = (
    "|×˛ՍՏՓՕագզհոռսցքօყᐎᐏᐬᐯᐺᐻᑌᑗᑘᑧᑭᑯᑲᑳᑶᑷᑺᑻᑾᑿᒀᒁ"
    "ᒆᒇᒈᒍᒘᒙᒥᒪᒮᒯᒶᒷᔯᔰᕁᕽᕿᖁᖃᖄᖑᗞ᙮ᙳ‖℈℮∆∞∣∥∨∪⊤⋿⍙⍡⍬⍳⍴"
    "⍵⍶⍸⍹⍺╳△⟙⤫⤬⨯⨰ⴱⴸⴹⵁⵏⵔⵕⵝⵠꓐꓑꓒꓓꓔꓖꓗꓙꓚꓜꓝꓟꓠꓡꓢꓣꓦꓧꓪ"
    "ꓫꓬ𐌁𐌂𐌑𐌕𐌗𐌚"
)


def load_glyphs(split="train", by="character", image_size=32, fonts=None, renders=3, seed=0,
                return_metadata=False, characters=None, cache_dir=None, group_size=None):
    """`(images, labels)` of one class split, or `(images, labels, metadata)`.

    Args:
        split: `"train"` or `"test"`: about half of the images each, class-disjoint
            (font families stay on one side); a class's side never depends on `seed`.
            `"pretrain"` (with `by="character"`): other characters, for pretraining a
            backbone: symbols, arrows, box drawing, Armenian, Georgian, ..., drawn by at
            least `MIN_PRETRAIN_FONTS` fonts, and none of them a variant or look-alike of
            a train or test character (see `_render_pretrain`).
        by: `"character"` (classes are characters, split by character), `"font"`
            (classes are font files, split by font family) or `"group"` (classes are
            groups of `group_size` characters, split by group).
        image_size: side of the square images in pixels, at least 16.
        fonts: `None` for the fonts matplotlib ships; `"system"` for those plus the
            machine's font folders; or a font file or folder, or a list of them
            (`.ttf`, `.otf`, `.ttc`; folders are searched recursively).
        renders: distorted renders of each glyph of each font, at least 1.
        seed: seed of the distortions; the same seed gives the same images.
        return_metadata: also return a dict of per-image arrays: `"character"` (str)
            and `"font"` (the font file's name).
        characters: a string of the characters to draw; default `DEFAULT_CHARACTERS`
            (Latin letters, digits, Greek, Cyrillic, less `CONFUSABLES`). With
            `split="pretrain"`, the characters that the pretraining split keeps away from.
        cache_dir: folder of the render cache; default `$KERAS_DML_CACHE/glyphs`, or
            `~/.cache/keras_dml/glyphs`.
        group_size: with `by="group"`, characters per class, from 2 to half of the
            characters drawn (so that there are at least two groups); default
            `DEFAULT_GROUP_SIZE`. Only with `by="group"`.

    Returns:
        images: float32 `(n, image_size, image_size, 1)` in `[0, 1]`, white on black;
        labels: int32, re-indexed from 0 within the split (in the order of the classes'
        names); with `return_metadata`, the metadata dict.
    """
    group_size = _check_group_arguments(split, by, group_size)
    checks.one_of(split, "split", (*SPLITS, PRETRAIN))
    checks.one_of(by, "by", TASKS)
    image_size = checks.positive_int(image_size, "image_size")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}; got image_size={image_size}.")
    renders = checks.positive_int(renders, "renders")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got seed={seed!r}.")
    seed = int(seed)
    characters = _check_characters(characters)
    paths = font_files(fonts)

    if split == PRETRAIN and by != "character":
        raise ValueError(f"split='pretrain' has character classes only: use by='character'; got by={by!r}.")
    with warnings.catch_warnings():
        if fonts is None:  # matplotlib's own symbol fonts are left out as designed: no news
            warnings.simplefilter("ignore", SkippedFontWarning)
        data = _rendered(paths, characters, image_size, renders, seed, cache_dir, pretrain=split == PRETRAIN)
    if split == PRETRAIN:
        return _pretrain_split(data, fonts, return_metadata)
    if by == "group":
        data = _grouped(data, group_size)
    class_names = data[by]
    side_names = data["family"] if by == "font" else class_names
    sides = _test_sides(side_names)
    keep = sides == (split == "test")
    if len(np.unique(class_names)) < 2:
        raise ValueError(f"fonts cover fewer than two classes with by={by!r}; got fonts={fonts!r}.")
    if not keep.any():
        raise ValueError(f"fonts leave no {by} in split={split!r}; pass more fonts or characters "
                         f"(fonts={fonts!r}).")
    names, labels = np.unique(class_names[keep], return_inverse=True)
    images = (data["images"][keep].astype(np.float32) / 255.0)[..., None]
    labels = labels.astype(np.int32).reshape(-1)
    if not return_metadata:
        return images, labels
    return images, labels, {"character": data["character"][keep], "font": data["font"][keep]}


def _pretrain_split(data, fonts, return_metadata):
    """`load_glyphs`' return value for the pretraining split: every image of `data`."""
    if len(np.unique(data["character"])) < 2:
        raise ValueError(f"fonts leave fewer than two characters for split='pretrain' (each must be drawn by "
                         f"{MIN_PRETRAIN_FONTS} fonts); got fonts={fonts!r}.")
    _, labels = np.unique(data["character"], return_inverse=True)
    images = (data["images"].astype(np.float32) / 255.0)[..., None]
    labels = labels.astype(np.int32).reshape(-1)
    if not return_metadata:
        return images, labels
    return images, labels, {"character": data["character"], "font": data["font"]}


def font_files(fonts=None):
    """The font files `fonts` names (see `load_glyphs`) as absolute paths, sorted by file name.

    A font is named by its file name, so of several files with one name (matplotlib's
    DejaVuSans.ttf and the system's) the first found stays.
    """
    import matplotlib

    bundled = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    if fonts is None:
        sources = [bundled]
    elif isinstance(fonts, str) and fonts == "system":
        from matplotlib import font_manager

        sources = [bundled, *font_manager.findSystemFonts(fontext="ttf")]
    elif isinstance(fonts, str | os.PathLike):
        sources = [fonts]
    else:
        sources = list(fonts)
    if not sources:
        raise ValueError("fonts must name at least one font file or folder; got an empty fonts list.")
    paths = {}  # file name -> path: a font is named by its file, so the first of a name stays
    for source in sources:
        source = os.path.abspath(os.path.expanduser(os.fspath(source)))
        if os.path.isdir(source):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(source) for name in names
                           if name.lower().endswith(FONT_EXTENSIONS))
            if not found:
                raise ValueError(f"fonts: the folder {source} holds no font files ({', '.join(FONT_EXTENSIONS)}).")
        elif os.path.isfile(source):
            found = [source]
        else:
            raise ValueError(f"fonts: {source} is neither a font file nor a folder.")
        for path in found:
            paths.setdefault(os.path.basename(path), path)
    return sorted(paths.values(), key=os.path.basename)


def _check_characters(characters):
    if characters is None:
        return DEFAULT_CHARACTERS
    if not isinstance(characters, str) or len(set(characters)) < 2:
        raise ValueError(f"characters must be a string of at least two distinct characters; "
                         f"got characters={characters!r}.")
    return "".join(dict.fromkeys(characters))  # distinct, in order


def _check_group_arguments(split, by, group_size):
    """`group_size` checked against `split` and `by`: an int >= 2 with `by="group"`, else None."""
    if by != "group":
        if group_size is not None:
            raise ValueError(f"group_size is only used with by='group'; got group_size={group_size!r} "
                             f"with by={by!r}.")
        return None
    if split == PRETRAIN:
        raise ValueError("by='group' has no split='pretrain' (the pretraining characters are not grouped); "
                         "use split='train' or 'test'.")
    group_size = DEFAULT_GROUP_SIZE if group_size is None else checks.positive_int(group_size, "group_size")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (a class of one character has one mode); "
                         f"got group_size={group_size}.")
    return group_size


def character_groups(characters, group_size):
    """`{character: group name}`: `characters` ordered by a hash of each character and cut
    into consecutive groups of `group_size`; a group's name is its characters in that order.

    The `len(characters) % group_size` characters left at the end of the order are in no
    group. Raises `ValueError` (naming `group_size`) when fewer than two groups fit.
    """
    order = sorted(set(characters), key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    if len(order) // group_size < 2:
        raise ValueError(f"group_size={group_size} leaves fewer than two groups of the {len(order)} characters "
                         f"drawn; group_size may be at most {len(order) // 2}.")
    groups = {}
    for start in range(0, len(order) - group_size + 1, group_size):
        name = "".join(order[start:start + group_size])
        groups.update({c: name for c in name})
    return groups


def _grouped(data, group_size):
    """`data` restricted to the images of grouped characters, with a `"group"` array (their group names)."""
    groups = character_groups(data["character"].tolist(), group_size)
    keep = np.isin(data["character"], list(groups))
    data = {name: values[keep] for name, values in data.items()}
    data["group"] = np.array([groups[c] for c in data["character"].tolist()], str)
    return data


def _test_sides(groups):
    """Per item, whether its group (a character, or a font family) is on the test side.

    Groups sorted by a hash of their name go one by one to the side holding fewer items
    so far: about half of the data on each side, and a group's side depends on the
    groups present, never on `seed`.
    """
    names, counts = np.unique(groups, return_counts=True)
    order = sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())
    sizes, test = [0, 0], np.zeros(len(names), bool)
    for i in order:
        test[i] = sizes[1] < sizes[0]
        sizes[int(test[i])] += counts[i]
    return test[np.searchsorted(names, groups)]


# ---------------------------------------------------------------- cache


def _cache_path(paths, characters, image_size, renders, seed, cache_dir, pretrain=False):
    if cache_dir is None:
        root = os.environ.get(CACHE_ENV) or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "keras_dml")
        cache_dir = os.path.join(root, "glyphs")
    stats = [(path, os.path.getsize(path), os.path.getmtime(path)) for path in paths]
    settings = [RENDER_VERSION, EM_SIZE, BASELINE, SUPERSAMPLE, MAX_SHIFT, MAX_ROTATION, SCALE_RANGE,
                STROKE_WIDTHS, MIN_INK, SAME_RENDER, MAX_SHARED_RENDER, RECOGNITION_RANK, MIN_RECOGNIZED]
    if pretrain:
        settings += [PRETRAIN, PRETRAIN_VERSION, MIN_PRETRAIN_FONTS, NEAR_DUPLICATE, PRETRAIN_CATEGORIES, METRIC_SCRIPTS,
                     VARIANT_WORDS, UNICODE_LOOKALIKES, unicodedata.unidata_version]
    key = json.dumps([settings, stats, characters, image_size, renders, seed])
    return os.path.join(os.fspath(cache_dir), hashlib.sha256(key.encode()).hexdigest()[:20] + ".npz")


def _rendered(paths, characters, image_size, renders, seed, cache_dir, pretrain=False):
    """Every kept glyph's renders as a dict of arrays, from the cache or rendered now.

    With `pretrain`, those of the pretraining characters that keep away from `characters`.
    """
    path = _cache_path(paths, characters, image_size, renders, seed, cache_dir, pretrain)
    if os.path.exists(path):
        try:
            with np.load(path) as cached:
                return {name: cached[name] for name in cached.files}
        except (OSError, ValueError, zlib.error) as error:
            warnings.warn(f"Ignoring the unreadable glyph cache {path}: {error}", stacklevel=3)
    data = (_render_pretrain if pretrain else _render_all)(paths, characters, image_size, renders, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".npz.tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return data


# ---------------------------------------------------------------- rendering


def _render_all(paths, characters, image_size, renders, seed):
    """Checks every font's glyphs, then draws `renders` distorted images of each kept one."""
    return _draw_all(_checked_fonts(paths, characters, image_size), image_size, renders, seed)


def _checked_fonts(paths, characters, image_size):
    """The readable, recognised fonts of `paths`, each with `"plain"`: its kept glyphs of `characters`."""
    fonts = []
    for path in paths:
        font = _open_font(path, image_size)
        if font is not None:
            font["plain"] = _kept_glyphs(font, characters, image_size)
            fonts.append(font)
    return _recognized([font for font in fonts if font["plain"]])


def _draw_all(fonts, image_size, renders, seed):
    """`renders` distorted images of each glyph in each font's `"plain"`, as a dict of arrays."""
    images, chars, names, families = [], [], [], []
    for font in fonts:
        name = os.path.basename(font["path"])
        for char in font["plain"]:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode()), ord(char)])
            images += [_draw(font, char, image_size, rng) for _ in range(renders)]
            chars += [char] * renders
            names += [name] * renders
            families += [font["family"]] * renders
    return {"images": np.array(images, np.uint8).reshape(-1, image_size, image_size),
            "character": np.array(chars, str), "font": np.array(names, str), "family": np.array(families, str)}


# ---------------------------------------------------------------- the pretraining split


def _render_pretrain(paths, characters, image_size, renders, seed):
    """The pretraining split's renders: characters unrelated to `characters` in the fonts that draw them.

    Of the fonts that `load_glyphs` keeps for `characters`, a character is a candidate
    when `_unrelated(char, characters)` and at least `MIN_PRETRAIN_FONTS` of them map it.
    Then, by its undistorted renders, checked like `load_glyphs`' glyphs (`_kept_glyphs`),
    and by the glyph's name in the font (`_named_as`):

    - a character is left out everywhere when, in some font, its render lies closer
      than `NEAR_DUPLICATE` to a render of one of `characters` in the same font
      (Armenian seh and u in DejaVu Sans: a look-alike that Unicode does not decompose);
    - a glyph is left out of one font when it is not recognised: its character is not
      among the `RECOGNITION_RANK` nearest in the other fonts, or one of `characters` is
      nearer (`_distances_to_characters`, over the glyphs of both sets), or the font
      names it after another character: a font that maps the codepoint to another
      drawing (Computer Modern draws Greek letters and the ff, fi, fl ligatures at
      Latin-1 codepoints: its copyright sign is a Phi);
    - a character is kept when at least `MIN_PRETRAIN_FONTS` fonts keep its glyph.
    """
    fonts = _checked_fonts(paths, characters, image_size)
    counts = {}
    for font in fonts:
        for code in font["ft"].get_charmap():
            counts[chr(code)] = counts.get(chr(code), 0) + 1
    metric = set(characters)
    candidates = "".join(sorted(c for c, n in counts.items()
                                if n >= MIN_PRETRAIN_FONTS and c.isprintable() and _unrelated(c, metric)))
    near = set()
    for font in fonts:
        font["metric"] = font["plain"]
        font["plain"] = {char: render for char, render in _kept_glyphs(font, candidates, image_size).items()
                         if _named_as(font, char)}
        if font["plain"]:
            close = _closer_than(_blurred(font["plain"]), _blurred(font["metric"]), NEAR_DUPLICATE)
            near.update(char for char, is_close in zip(font["plain"], close) if is_close)
    fonts = [font for font in fonts if font["plain"]]
    if not fonts:
        return _draw_all([], image_size, renders, seed)
    # One vote over both sets: each glyph's own character must be among the nearest in
    # the other fonts, and nearer than every metric character.
    names, char_ids, to_char = _distances_to_characters([{"plain": {**font["metric"], **font["plain"]}}
                                                         for font in fonts])
    own = to_char[np.arange(len(to_char)), char_ids]
    recognized = (to_char < own[:, None]).sum(1) < RECOGNITION_RANK
    recognized &= to_char[:, np.isin(names, list(metric))].min(1) > own
    first = 0
    for font in fonts:
        first += len(font["metric"])
        votes, first = recognized[first:first + len(font["plain"])], first + len(font["plain"])
        font["plain"] = {char: render for (char, render), vote in zip(font["plain"].items(), votes)
                         if vote and char not in near}
    drawn = {}
    for font in fonts:
        for char in font["plain"]:
            drawn[char] = drawn.get(char, 0) + 1
    for font in fonts:
        font["plain"] = {char: render for char, render in font["plain"].items() if drawn[char] >= MIN_PRETRAIN_FONTS}
    return _draw_all([font for font in fonts if font["plain"]], image_size, renders, seed)


def _named_as(font, char):
    """False when the font names its glyph for `char` after another character (Adobe Glyph List).

    Computer Modern's cmap puts its own glyphs at Latin-1 codepoints: its copyright
    sign is the glyph "Phi", its degree sign "fl", and cmmi10's "gamma".
    """
    from fontTools import agl  # a dependency of matplotlib

    name = font["ft"].get_glyph_name(font["ft"].get_char_index(ord(char)))
    drawn = agl.toUnicode(name) if name else ""
    return not drawn or drawn == char


def _blurred(glyphs):
    """`{char: uint8 render}` as flat 3x3-blurred float32 rows in `[0, 1]`."""
    renders = _blur(np.stack(list(glyphs.values())).astype(np.float32) / 255.0)
    return renders.reshape(len(renders), -1)


def _closer_than(flat, others, threshold):
    """Per row of `flat`, whether some row of `others` differs from it by less than `threshold` (`_difference`).

    Two images' difference is at least that of their ink sums, so only pairs whose ink
    differs by less are compared.
    """
    ink, other_ink = flat.sum(1), others.sum(1)
    bound = np.abs(ink[:, None] - other_ink[None, :]) / np.maximum(ink[:, None] + other_ink[None, :], 1.0)
    rows, cols = np.nonzero(bound < threshold)
    close = np.zeros(len(flat), bool)
    for start in range(0, len(rows), 4096):  # pairs in blocks keep memory small
        pairs = slice(start, start + 4096)
        hit = _difference(flat[rows[pairs]], others[cols[pairs]]) < threshold
        close[rows[pairs][hit]] = True
    return close


def _unrelated(char, metric):
    """Whether `char` may be a pretraining class beside the metric-learning characters `metric`.

    Left out: `metric`, `CONFUSABLES` and `UNICODE_LOOKALIKES`; characters outside
    `PRETRAIN_CATEGORIES`, and the replacement character; names that hold a word of
    `METRIC_SCRIPTS` or `VARIANT_WORDS` (superscript, circled, n-ary summation, ...) or
    end in a single letter or digit (TURNED CAPITAL F, SCRIPT SMALL L); characters whose
    compatibility decomposition (NFKD: é -> e + accent, 𝐞 -> e) holds one of `metric`,
    a digit or a letter of `METRIC_SCRIPTS`.
    """
    if char in metric or char in CONFUSABLES or char in UNICODE_LOOKALIKES or char == "\ufffd" \
            or unicodedata.category(char) not in PRETRAIN_CATEGORIES:
        return False
    words = unicodedata.name(char, "").split()
    if not words or set(words) & set(METRIC_SCRIPTS) or len(words[-1]) == 1 \
            or any(word in " ".join(words) for word in VARIANT_WORDS):
        return False
    return not any(part in metric or unicodedata.category(part) == "Nd"
                   or set(unicodedata.name(part, "").split()) & set(METRIC_SCRIPTS)
                   for part in unicodedata.normalize("NFKD", char) if part != char)


def _open_font(path, image_size):
    """`{"path", "pil", "ft", "family"}` for a font file, or None (with a warning) when it cannot be read."""
    from matplotlib import ft2font
    from PIL import ImageFont

    try:
        pil = ImageFont.truetype(path, size=round(EM_SIZE * image_size * SUPERSAMPLE))
        ft = ft2font.FT2Font(path)
    except Exception as error:  # FreeType raises OSError, RuntimeError or ValueError by version
        warnings.warn(f"Skipping the font file {path}: it cannot be read ({error}).", SkippedFontWarning,
                      stacklevel=6)
        return None
    return {"path": path, "pil": pil, "ft": ft, "family": pil.getname()[0] or os.path.basename(path)}


def _kept_glyphs(font, characters, image_size):
    """`{character: undistorted render}` of the glyphs of `font` that pass the checks.

    Left out: characters outside the font's cmap, renders of the font's placeholder or
    almost empty, renders shared by more than `MAX_SHARED_RENDER` characters (a
    placeholder), and a character drawn the same as an earlier kept one.
    """
    covered = [c for c in characters if font["ft"].get_char_index(ord(c))]
    if not covered:
        return {}
    missing = _draw(font, "\U0010fffd", image_size)  # a private-use codepoint: the placeholder
    plain = np.stack([_draw(font, c, image_size) for c in covered])
    flat = plain.reshape(len(covered), -1).astype(np.float32)
    inked = flat.sum(1) / 255.0 >= MIN_INK
    inked &= _difference(flat, missing.reshape(1, -1).astype(np.float32)) >= SAME_RENDER
    same = _same_renders(flat)
    shared = same.sum(1) - 1  # other characters with the same image
    kept = {}
    for i, char in enumerate(covered):
        earlier = [j for j in np.flatnonzero(same[i]) if covered[j] in kept]
        if inked[i] and shared[i] <= MAX_SHARED_RENDER - 1 and not earlier:
            kept[char] = plain[i]
    return kept


def _difference(a, b):
    """Relative L1 difference of flat images, row by row: `sum|a - b| / (sum a + sum b)`."""
    return np.abs(a - b).sum(-1) / np.maximum(a.sum(-1) + b.sum(-1), 1.0)


def _same_renders(flat):
    """`(n, n)` bool: flat images `i` and `j` differ by less than `SAME_RENDER` (`_difference`).

    Only pairs whose ink differs by less than that can, so only those are compared.
    """
    ink = flat.sum(1)
    same = np.abs(ink[:, None] - ink[None, :]) < SAME_RENDER * np.maximum(ink[:, None] + ink[None, :], 1.0)
    rows, cols = np.nonzero(np.triu(same, k=1))
    close = _difference(flat[rows], flat[cols]) < SAME_RENDER
    same[:] = False
    same[rows[close], cols[close]] = same[cols[close], rows[close]] = True
    np.fill_diagonal(same, True)
    return same


def _recognized(fonts):
    """The fonts whose glyphs look like the same characters in the other fonts.

    A glyph is recognised when its own character is among the `RECOGNITION_RANK`
    characters nearest to it (`_glyph_ranks`). A font with fewer than `MIN_RECOGNIZED`
    of its glyphs recognised draws something else at these codepoints (a symbol font)
    and is left out, with a warning. With fewer than three fonts to vote, every font is
    kept.
    """
    if len(fonts) < 3:
        return fonts
    recognized = _glyph_ranks(fonts) < RECOGNITION_RANK
    owners = np.concatenate([np.full(len(font["plain"]), i) for i, font in enumerate(fonts)])
    kept = []
    for i, font in enumerate(fonts):
        share = recognized[owners == i].mean()
        if share >= MIN_RECOGNIZED:
            kept.append(font)
        else:
            warnings.warn(f"Skipping the font {os.path.basename(font['path'])}: only {share:.0%} of its glyphs "
                          "look like the same characters in the other fonts (a symbol font?).",
                          SkippedFontWarning, stacklevel=6)
    return kept


def _glyph_ranks(fonts):
    """Per glyph of `fonts` (their `"plain"`, in order), how many characters lie nearer than its own.

    The distance to a character is that to its closest undistorted render in another
    font (3x3-blurred pixels, `_distances_to_characters`); rank 0: no other character
    is nearer.
    """
    names, char_ids, to_char = _distances_to_characters(fonts)
    own = to_char[np.arange(len(to_char)), char_ids]
    return (to_char < own[:, None]).sum(1)


def _distances_to_characters(fonts):
    """`(names, char_ids, distances)`: per glyph of `fonts` (their `"plain"`, in order), its character's
    index in the sorted character `names`, and its squared distance to each character's
    closest undistorted render in another font (3x3-blurred pixels), `(glyphs, characters)`.
    """
    renders = np.concatenate([np.stack(list(font["plain"].values())) for font in fonts])
    renders = _blur(renders.astype(np.float32) / 255.0).reshape(len(renders), -1)
    chars = np.concatenate([list(font["plain"]) for font in fonts])
    owners = np.concatenate([np.full(len(font["plain"]), i) for i, font in enumerate(fonts)])
    names, char_ids = np.unique(chars, return_inverse=True)
    order = np.argsort(char_ids, kind="stable")  # columns grouped by character, for one reduceat per block
    firsts = np.flatnonzero(np.diff(char_ids[order], prepend=-1))
    squared = (renders ** 2).sum(1)
    to_char = np.empty((len(renders), len(names)), np.float32)
    for start in range(0, len(renders), 1024):  # blocks of rows keep the distance matrix small
        rows = slice(start, start + 1024)
        distances = squared[rows, None] + squared[None, :] - 2.0 * renders[rows] @ renders.T
        distances[owners[rows, None] == owners[None, :]] = np.inf  # vote with other fonts only
        to_char[rows] = np.minimum.reduceat(distances[:, order], firsts, axis=1)
    return names, char_ids.reshape(-1), to_char


def _blur(images):
    """3x3 box blur of `(n, H, W)` images (edges padded with zeros)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    height, width = images.shape[1:]
    return sum(padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0


def _draw(font, char, image_size, rng=None):
    """uint8 `(image_size, image_size)` image of `char`, white on black; distorted when `rng` is given."""
    from PIL import Image, ImageDraw

    side = image_size * SUPERSAMPLE
    canvas = Image.new("L", (side, side), 0)
    stroke = 0 if rng is None else int(rng.choice(STROKE_WIDTHS))
    ImageDraw.Draw(canvas).text((side / 2, BASELINE * side), char, fill=255, font=font["pil"], anchor="ms",
                                stroke_width=stroke, stroke_fill=255)
    if rng is not None:
        angle = np.deg2rad(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
        scale = rng.uniform(*SCALE_RANGE)
        shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * side
        # The affine map from output to input pixels: rotate and scale about the centre, then shift.
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        centre = side / 2
        x0 = centre - cos * (centre + shift[0]) - sin * (centre + shift[1])
        y0 = centre + sin * (centre + shift[0]) - cos * (centre + shift[1])
        canvas = canvas.transform((side, side), Image.AFFINE, (cos, sin, x0, -sin, cos, y0),
                                  resample=Image.BILINEAR)
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.uint8)
