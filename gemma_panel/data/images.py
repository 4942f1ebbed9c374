"""Images in a dataset: which images each row has, where they are, and whether they read.

Two layouts are read. A column of image paths (``image``, ``images``, ``image_path``, ...;
one path, a list of paths, or a JSON list in a CSV cell) beside prompt/response or chat
columns, as in LLaVA's ``{"image": "cat.png", "conversations": [...]}`` whose text marks the
image's place with ``<image>``; and chat messages whose content has image parts, as OpenAI
writes them (``{"type": "image_url", "image_url": {"url": ...}}``, ``{"type": "image",
"image": ...}``). A path is relative to the data file's folder; ``file://`` URLs are local
paths. Web URLs are refused: nothing is downloaded (training machines are often offline,
and a dataset whose images can change under it cannot be reproduced).

PIL is imported only when an image is opened.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# Gemma 3's and Gemma 4's image markers: KerasHub's preprocessors expand each into the
# vision tokens (training/vision_inputs.py says which family takes which).
IMAGE_TOKEN = "<start_of_image>"
GEMMA4_IMAGE_TOKEN = "<|image|>"
IMAGE_MARKERS = (IMAGE_TOKEN, GEMMA4_IMAGE_TOKEN)
LLAVA_PLACEHOLDER = "<image>"
IMAGE_PART_TYPES = frozenset({"image", "image_url", "input_image"})
IMAGE_COLUMNS = ("image", "images", "image_path", "image_paths", "image_file", "img",
                 "image_url", "picture")
# What a column value must end with (or be a URL) to be an image reference: a column that
# is only named like one (``img``: "a sunset") is text the template does not use.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
MIN_SIDE = 16  # px: below this a picture is a few pixels (an icon, a 1x1 tracker)
MAX_SIDE = 16_384  # px: beyond this, decoding takes gigabytes (and PIL calls it a bomb)
_CACHE_SIZE = 4096
THUMB_PX = 96  # a preview thumbnail's longer side
THUMB_ROWS = 12  # rows of a preview that get thumbnails
THUMBS_PER_ROW = 4


PACKING_REFUSED = ("image datasets are not packed (each image's vision tokens must stay in "
                   "one example's row): set data.pack=false.")


GEMMA3N_IMAGES = ("its images are not trained here (KerasHub's Gemma 3n converter always "
                  "builds its 300M-parameter vision tower, whose inputs neither Gemma 3's nor "
                  "Gemma 4's image path feeds)")


def text_only_refusal(source: str, presets: tuple[str, ...], reads_images: bool = False) -> str:
    """The sentence refusing image data for a registry model this tool cannot train on
    images: one that reads text only, or (`reads_images`) one whose vision tower is not
    trained here (Gemma 3n)."""
    named = f" (KerasHub preset {presets[-1]})" if presets and not reads_images else ""
    why = GEMMA3N_IMAGES if reads_images else "it reads text only"
    return (f"the model {source}{named} cannot train on this data's images, as {why}: set "
            "model.source to a preset with a vision tower, e.g. gemma3_instruct_4b or "
            "gemma4_instruct_2b.")


def user_turn(template) -> str:
    """The opening of `template`'s user turn, where images go when the text marks no place:
    Gemma 3's ``<start_of_turn>user\\n``, Gemma 4's ``<|turn>user\\n``."""
    from gemma_panel.data.templates import GEMMA_TURNS

    return getattr(template, "turns", GEMMA_TURNS).open("user")


def template_places_images(template, example) -> bool:
    """Whether `template` renders `example`'s prompt with a place for images: its family's
    user turn (they go at its start), an ``<image>`` placeholder or an image marker. A
    plain-text template (``completion``) has none."""
    from gemma_panel.data.templates import render_text

    try:
        prompt = render_text(template.segments(example)[:-1])
    except ValueError:  # a row the template cannot render is reported where it is rendered
        return True
    return any(mark in prompt for mark in (user_turn(template), LLAVA_PLACEHOLDER,
                                           *IMAGE_MARKERS))


def trains_images(report) -> bool:
    """Whether a prepared dataset's run trains on images: it has some, and its template
    uses them (``images_ignored`` otherwise)."""
    return report.has("images") and not report.has("images_ignored")


class ImageRefused(ValueError):
    """A reference that is not read, with the reason and the next step as its message."""


def image_column(columns: Iterable[str]) -> str | None:
    """The column holding image paths, by name (the first alias found), or None."""
    normal = {c.strip().lower().replace(" ", "_").replace("-", "_"): c for c in columns}
    return next((normal[a] for a in IMAGE_COLUMNS if a in normal), None)


def is_image_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES


def _part_ref(part: dict) -> Any:
    """The path or URL in an image part, in any of the shapes it is written."""
    for key in ("image_url", "image", "url", "path", "file"):
        value = part.get(key)
        if isinstance(value, dict):
            value = value.get("url", value.get("path"))
        if value is not None:
            return value
    return None


def message_image_refs(messages: Any) -> list[Any]:
    """The image references in chat messages' content parts, in order."""
    refs = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content", message.get("value")) \
            if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if is_image_part(part):
                refs.append(_part_ref(part))
    return refs


def column_refs(value: Any) -> list[Any]:
    """The references in an image column's value: one, a list, or a JSON list as text."""
    if value is None or value == "":
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    if isinstance(value, dict):
        return [_dict_ref(value)]
    if isinstance(value, list):
        return [_dict_ref(v) if isinstance(v, dict) else v for v in value]
    return [value]


class EmbeddedImage:
    """An image given as its bytes in the data (a Hugging Face ``datasets`` Image column
    written to Parquet: ``{"bytes": ..., "path": name}``), which is not read yet."""

    def __repr__(self) -> str:
        return "<embedded image bytes>"


def _dict_ref(value: dict) -> Any:
    if value.get("bytes"):
        return EmbeddedImage()
    return value.get("path", value.get("url"))


def names_image(ref: Any) -> bool:
    """Whether an image column's value refers to an image: a path with an image file's
    suffix, or a URL (refused later with its reason); anything else is text."""
    if isinstance(ref, EmbeddedImage):
        return True
    if not isinstance(ref, str):
        return False
    ref = ref.strip().lower()
    return "://" in ref or ref.startswith("data:") or ref.endswith(IMAGE_SUFFIXES)


def image_base(data_path) -> Path | None:
    """The folder relative image paths are read from: the data file's own; None for a data
    file given as a URL (``gs://``), whose images are not fetched."""
    text = os.fspath(data_path)
    return None if "://" in text else Path(text).parent


def resolve_image(ref: Any, base: Path | None) -> Path:
    """The local file of an image reference, relative to `base` (the data file's folder,
    ``image_base``; None: the data file is remote and only absolute paths are read).

    Raises:
        ImageRefused: a web or data URL, a relative path beside a remote data file, or a
            value that is no path at all.
    """
    if isinstance(ref, EmbeddedImage):
        raise ImageRefused("the image is given as bytes inside the data file, which is not "
                           "read yet; save the images as files beside the data file and "
                           "give their paths instead")
    if not isinstance(ref, str) or not ref.strip():
        raise ImageRefused(f"the image reference {ref!r} is not a path; give a file path "
                           "relative to the data file")
    ref = ref.strip()
    if "://" in ref or ref.startswith("data:"):
        url = urlparse(ref)
        if url.scheme == "file":
            return Path(unquote(url.path))
        raise ImageRefused(f"{ref[:80]!r} is a {url.scheme or 'data'} URL: images are not "
                           "downloaded; save them beside the data file and give their "
                           "paths (or file:// URLs) instead")
    path = Path(os.path.expanduser(ref))
    if path.is_absolute():
        return path
    if base is None:
        raise ImageRefused(f"{ref[:80]!r} is relative to a data file in cloud storage, and "
                           "images there are not fetched; copy the data file and its images "
                           "to a local folder, or give absolute local paths")
    return base / path


def inspect_image(path: Path) -> tuple[str, str, str] | None:
    """(code, severity, message) for what is wrong with one image file, or None."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "image_missing", "error", f"image {path} does not exist"
    try:
        with Image.open(path) as image:
            width, height = image.size
            if max(width, height) > MAX_SIDE:
                return "image_too_large", "error", (
                    f"image {path.name} is {width}x{height} px, over {MAX_SIDE} px a side; "
                    "shrink it (the model sees it at 896x896 anyway)")
            image.load()
    except Image.DecompressionBombError:
        return "image_too_large", "error", (f"image {path.name} has too many pixels to "
                                            "decode safely; shrink it")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return "image_unreadable", "error", f"image {path.name} does not decode: {exc}"
    if min(width, height) < MIN_SIDE:
        return "image_too_small", "warning", (
            f"image {path.name} is {width}x{height} px, under {MIN_SIDE} px a side: "
            "is it the picture you meant?")
    return None


def thumbnail_uri(path: Path, size: int = THUMB_PX) -> str | None:
    """A small JPEG of the image as a ``data:`` URI (for a page), or None when it does not
    read; the image is decoded at a reduced size (``draft``) where the format allows."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_SIDE:
                return None
            image.draft("RGB", (size, size))
            small = image.convert("RGB")
            small.thumbnail((size, size))
    except Exception:  # noqa: BLE001 - a preview shows what reads; the check says why not
        return None
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def preview_thumbnails(rows: Sequence[Mapping[str, Any]], path, columns: Sequence[str],
                       messages_column: str | None, confine=None) -> list[dict]:
    """Thumbnails for the first `THUMB_ROWS` rows that have images: one dict per row,
    ``{"row", "images": [data URI or None (unreadable)], "more": images not shown}``.
    ``confine(path)`` (a server's) returns the path it may read or raises ImageRefused."""
    column = image_column(columns)
    if column is None and messages_column is None:
        return []
    base = image_base(path)
    out = []
    for number, values in enumerate(rows, 1):
        refs = row_image_refs(values, column, messages_column)
        if not refs:
            continue
        uris = []
        for ref in refs[:THUMBS_PER_ROW]:
            try:
                image = resolve_image(ref, base)
                uris.append(thumbnail_uri(confine(image) if confine else image))
            except ImageRefused:
                uris.append(None)
        out.append({"row": number, "images": uris, "more": len(refs) - len(uris)})
        if len(out) >= THUMB_ROWS:
            break
    return out


def row_image_refs(values: Mapping[str, Any], column: str | None,
                   messages_column: str | None) -> list[Any]:
    """Every image reference of one row: its image column's (the values that name an
    image, `names_image`), then its messages' parts."""
    refs = [r for r in column_refs(values.get(column)) if names_image(r)] if column else []
    if messages_column:
        messages = values.get(messages_column)
        if isinstance(messages, str) and messages.lstrip().startswith("["):
            try:
                messages = json.loads(messages)
            except (json.JSONDecodeError, RecursionError):
                messages = None
        refs += message_image_refs(messages)
    return refs


def placeholder_count(values: Mapping[str, Any], text_columns: Sequence[str]) -> int:
    """How many LLaVA ``<image>`` placeholders the row's text has."""
    count = 0
    for col in text_columns:
        value = values.get(col)
        count += json.dumps(value).count(LLAVA_PLACEHOLDER) if value is not None else 0
    return count


class ImageChecker:
    """Checks each row's images as the data check reads it; `finish` after the last row.

    Args:
        report: where problems go (a `ValidationReport`).
        base: the folder image paths are relative to (None: the data file is remote).
        column: the image column (None: images only in message parts).
        text_columns: the mapped text columns, searched for ``<image>`` placeholders.
        messages_column: the chat messages column, whose image parts are read.
    """

    def __init__(self, report, base: Path | None, column: str | None, text_columns: Sequence[str],
                 messages_column: str | None):
        self.report, self.base, self.column = report, base, column
        self.text_columns, self.messages_column = list(text_columns), messages_column
        self.rows_with_images = 0
        self.images = 0
        self.ignored: list[Any] = []  # the first column value that names no image
        self.rows_ignored = 0
        self._seen: dict[Path, tuple[str, str, str] | None] = {}

    @classmethod
    def for_file(cls, report, path, columns: Sequence[str], mapping) -> ImageChecker | None:
        """The checker for a file with these columns; None when no column can hold images."""
        column = image_column(columns)
        if column is None and mapping.messages is None:
            return None
        text = [c for c in (mapping.prompt, mapping.input, mapping.response, mapping.text,
                            mapping.messages) if c]
        base = image_base(path)
        return cls(report, base, column, text, mapping.messages)

    def check(self, record) -> None:
        if self.column:
            text = [r for r in column_refs(record.values.get(self.column)) if not names_image(r)]
            self.rows_ignored += bool(text)
            self.ignored += text[:1 - len(self.ignored)]
        refs = row_image_refs(record.values, self.column, self.messages_column)
        where = {"line": record.line, "row": record.row,
                 "column": self.column or self.messages_column}
        wanted = placeholder_count(record.values, self.text_columns) if self.column else 0
        if wanted and wanted != len(refs):
            self.report.error("image_count", f"the text has {wanted} {LLAVA_PLACEHOLDER} "
                              f"placeholder(s) but the row has {len(refs)} image(s)",
                              **where)
        if not refs:
            return
        self.rows_with_images += 1
        self.images += len(refs)
        for ref in refs:
            try:
                path = resolve_image(ref, self.base)
            except ImageRefused as exc:
                self.report.error("image_url", str(exc), **where)
                continue
            problem = self._inspect(path)
            if problem is not None:
                code, severity, message = problem
                getattr(self.report, severity)(code, message, **where)

    def _inspect(self, path: Path):
        if path in self._seen:
            return self._seen[path]
        problem = inspect_image(path)
        if len(self._seen) < _CACHE_SIZE:
            self._seen[path] = problem
        return problem

    def finish(self) -> None:
        if self.rows_ignored:
            example = str(self.ignored[0])[:30]
            self.report.warning(
                "image_column_ignored", f"column '{self.column}' is ignored: it is named like "
                f"an image column, but {self.rows_ignored} row(s) name no image file there "
                f"(e.g. {example!r}); give image paths (.png, .jpg, ...) if they are images")
        if self.rows_with_images:
            self.report.warning(
                "images", f"{self.rows_with_images} row(s) have {self.images} image(s): only "
                "a model that reads images (Gemma 3 4B and up, Gemma 4) trains on them, unpacked "
                "(data.pack=false); a text-only model sees just the text")
