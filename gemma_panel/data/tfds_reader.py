"""TensorFlow Datasets sources: ``tfds:NAME[/CONFIG][:VERSION][:SPLIT]``.

A TFDS dataset is read from a folder where it has already been prepared (``tfds build``,
or ``builder.download_and_prepare()``), never downloaded: no machine that runs this
reaches the internet. The folder is, in order, `data_dir` (``ReadOptions.tfds_data_dir``),
``$GEMMA_PANEL_TFDS_DIR`` (what the CLI uses), or ``<GEMMA_PANEL_HOME>/tfds``.

The prepared files are opened with ``tfds.builder_from_directory``, so the dataset's
builder code is not needed, and rows are streamed one at a time through ``tf.data``.
Only text-like features are decoded (text, class labels, scalars, lists of text, chat
turns); images, audio and other tensors are skipped and named once in the report.
Nested features are flattened to ``parent/child`` columns; a class label becomes its name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.sources import Record

PREFIX = "tfds:"
ENV_DATA_DIR = "GEMMA_PANEL_TFDS_DIR"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def is_tfds_source(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


@dataclass(frozen=True)
class TfdsSource:
    """A parsed ``tfds:`` source.

    Args:
        name: the dataset name, with its config if any (``glue/sst2``).
        version: ``1.0.0``, or None for the newest prepared version.
        split: a TFDS split expression (``train``, ``train[:10%]``, ``train+test``), or
            None for ``train`` (or the only split).
    """

    name: str
    version: str | None = None
    split: str | None = None

    def __str__(self) -> str:
        parts = [PREFIX + self.name] + [p for p in (self.version, self.split) if p]
        return ":".join(parts)


def parse_tfds_source(text: str) -> TfdsSource:
    """``tfds:imdb_reviews:test`` -> TfdsSource("imdb_reviews", None, "test").

    A version may follow the name (``tfds:mnist:3.0.1:train``); the split is the rest, so
    slices with colons (``train[:100]``) work.
    """
    if not text.startswith(PREFIX):
        raise DatasetError(f"{text!r} is not a tfds: source.")
    name, _, rest = text[len(PREFIX):].partition(":")
    name = name.strip().strip("/")
    if not name:
        raise DatasetError(f"{text!r}: name a dataset, e.g. tfds:imdb_reviews:train.")
    version = None
    head, _, tail = rest.partition(":")
    if _VERSION.match(head):
        version, rest = head, tail
    return TfdsSource(name, version, rest.strip() or None)


def tfds_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where prepared TFDS datasets are looked for (see the module docstring)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    from gemma_panel.home import home_dir

    return home_dir() / "tfds"


def prepared_datasets(data_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """``"name[/config]:version"`` -> {split: examples} for every dataset prepared in a folder.

    Read from each ``dataset_info.json`` without importing TensorFlow.
    """
    root = Path(data_dir)
    found: dict[str, dict[str, int]] = {}
    if not root.is_dir():
        return found
    for info in sorted(root.glob("*/*/dataset_info.json")) + sorted(
            root.glob("*/*/*/dataset_info.json")):
        version_dir = info.parent
        rel = version_dir.relative_to(root).parts
        if rel[0] == "downloads" or not _VERSION.match(rel[-1]):
            continue
        found[f"{'/'.join(rel[:-1])}:{rel[-1]}"] = _splits_from_info(info)
    return found


def _splits_from_info(info: Path) -> dict[str, int]:
    try:
        data = json.loads(info.read_text())
    except (OSError, ValueError):
        return {}
    return {s.get("name", "?"): sum(int(n) for n in s.get("shardLengths", []))
            for s in data.get("splits", [])}


def _listing(found: dict[str, dict[str, int]]) -> str:
    if not found:
        return "none"
    return "; ".join(f"{key} ({', '.join(f'{s}: {n}' for s, n in splits.items()) or 'no splits'})"
                     for key, splits in found.items())


def find_prepared(source: TfdsSource, data_dir: Path) -> Path:
    """The version folder of `source` in `data_dir`, or a `DatasetError` naming what is."""
    base = data_dir / source.name
    versions = _version_dirs(base)
    if not versions and base.is_dir():
        # A dataset with configs named without one: fine when there is only one.
        configs = [d for d in sorted(base.iterdir()) if _version_dirs(d)]
        if len(configs) == 1:
            base, versions = configs[0], _version_dirs(configs[0])
        elif configs:
            names = ", ".join(f"{source.name}/{d.name}" for d in configs)
            raise DatasetError(f"tfds:{source.name} has several configs prepared in "
                               f"{data_dir}: {names}. Name one, e.g. tfds:{source.name}/"
                               f"{configs[0].name}.", code="unreadable")
    if source.version is not None:
        versions = [v for v in versions if v.name == source.version]
    if versions:
        return max(versions, key=lambda v: tuple(int(x) for x in v.name.split(".")))
    found = prepared_datasets(data_dir)
    what = (f"version {source.version} of {source.name}" if source.version and base.is_dir()
            else f"dataset {source.name!r}")
    hint = ""
    if _tfds_catalog_knows(source.name):
        hint = (f" TFDS knows {source.name!r} but it has not been prepared there; this "
                "machine does not download datasets. Prepare it where there is network "
                f"(tfds build {source.name} --data_dir DIR) and copy DIR/{source.name} in.")
    raise DatasetError(f"{source}: no {what} prepared in the TFDS data dir {data_dir} "
                       f"(set it with tfds_data_dir or ${ENV_DATA_DIR}). Prepared there: "
                       f"{_listing(found)}.{hint}", code="unreadable")


def _version_dirs(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return [d for d in path.iterdir()
            if d.is_dir() and _VERSION.match(d.name) and (d / "dataset_info.json").exists()]


def _tfds_catalog_knows(name: str) -> bool:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return False
    try:
        tfds.builder_cls(name.split("/")[0])
    except tfds.core.registered.DatasetNotFoundError:
        return False
    return True


def read_tfds(
    text: str, report: ValidationReport, *, data_dir: str | os.PathLike | None = None
) -> Iterator[Record]:
    """Open a ``tfds:`` source and return an iterator over its rows as `Record`s.

    Raises `DatasetError` at once (not while iterating) for a missing dataset, version or
    split, naming what the data dir holds.
    """
    source = parse_tfds_source(text)
    folder = find_prepared(source, tfds_data_dir(data_dir))
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - a dependency of gemma_panel
        raise DatasetError("tfds: sources need tensorflow-datasets "
                           "(pip install tensorflow-datasets).") from exc
    try:
        builder = tfds.builder_from_directory(str(folder))
    except Exception as exc:  # a damaged or foreign folder: say which and why
        raise DatasetError(f"{source}: cannot open the prepared dataset in {folder}: {exc}"
                           ) from exc
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    split = source.split or ("train" if "train" in splits else
                             next(iter(splits)) if len(splits) == 1 else None)
    listing = ", ".join(f"{s} ({n} rows)" for s, n in splits.items()) or "none"
    if split is None:
        raise DatasetError(f"{source}: name a split; {source.name} has {listing}.")
    for part in split.split("+"):
        base = _SPLIT_NAME.match(part.strip())
        if base is None or base.group() not in splits:
            raise DatasetError(f"{source}: no split {part.strip()!r} in {source.name} "
                               f"({folder}); its splits are {listing}.")
    kept, skipped = _text_features(builder.info.features)
    if skipped:
        report.warning("non_text", "features that are not text were skipped: "
                       + ", ".join(f"{k} ({t})" for k, t in skipped.items()))
    if not kept:
        raise DatasetError(f"{source}: no text features to train on; it has "
                           + ", ".join(f"{k} ({t})" for k, t in skipped.items()) + ".")
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False,
                                     decoders=tfds.decode.PartialDecoding(_spec(kept)))
    except Exception as exc:  # bad slice syntax and the like
        raise DatasetError(f"{source}: cannot read split {split!r}: {exc}") from exc
    report.encoding = None
    return _rows(tfds.as_numpy(dataset), kept, report)


def _text_features(features) -> tuple[dict[str, Any], dict[str, str]]:
    """Flattened name -> feature for the features we read; name -> type for the rest."""
    import tensorflow_datasets as tfds

    F = tfds.features
    kept: dict[str, Any] = {}
    skipped: dict[str, str] = {}

    def visit(prefix: str, feature) -> None:
        if isinstance(feature, F.FeaturesDict):
            for key, child in feature.items():
                visit(f"{prefix}/{key}" if prefix else key, child)
        elif _is_text_like(feature, F):
            kept[prefix] = feature
        else:
            skipped[prefix] = type(feature).__name__

    visit("", features)
    return kept, skipped


def _is_text_like(feature, F) -> bool:
    import numpy as np

    if isinstance(feature, (F.Text, F.ClassLabel)):
        return True
    if isinstance(feature, F.Sequence):
        inner = feature.feature
        if isinstance(inner, F.FeaturesDict):  # chat turns: a list of {role, content}
            return all(isinstance(v, (F.Text, F.ClassLabel)) or _scalar(v, np)
                       for v in inner.values())
        return isinstance(inner, (F.Text, F.ClassLabel)) or _scalar(inner, np)
    return _scalar(feature, np)


def _scalar(feature, np) -> bool:
    shape = getattr(feature, "shape", None)
    dtype = getattr(feature, "np_dtype", None)
    if shape != () or dtype is None:
        return False
    return (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)
            or np.dtype(dtype).kind in "OSU")


def _spec(kept: dict[str, Any]) -> dict:
    spec: dict = {}
    for name in kept:
        node = spec
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = True
    return spec


def _rows(examples, kept: dict[str, Any], report: ValidationReport) -> Iterator[Record]:
    import tensorflow as tf

    rows = iter(examples)
    row = 0
    while True:
        try:
            example = next(rows)
        except StopIteration:
            return
        except tf.errors.OpError as exc:  # a damaged shard: report it, keep what was read
            report.error("unreadable", f"reading stopped after row {row}: "
                         f"{type(exc).__name__}: {exc.message.splitlines()[0]}")
            return
        row += 1
        values = {}
        for name, feature in kept.items():
            value = example
            for part in name.split("/"):
                value = value[part]
            values[name] = _convert(value, feature, report, row, name)
        yield Record(values, row=row)


def _convert(value, feature, report: ValidationReport, row: int, column: str):
    import numpy as np
    import tensorflow_datasets as tfds

    F = tfds.features
    if isinstance(feature, F.ClassLabel):
        return feature.int2str(int(value)) if feature.names else int(value)
    if isinstance(feature, F.Sequence):
        inner = feature.feature
        if isinstance(inner, F.FeaturesDict):  # columns of equal length -> list of dicts
            keys = list(inner.keys())
            n = len(value[keys[0]]) if keys else 0
            return [{k: _convert(value[k][i], inner[k], report, row, column) for k in keys}
                    for i in range(n)]
        items = [_convert(v, inner, report, row, column) for v in value]
        # One-element lists (one reference answer) read as the element itself.
        return items[0] if len(items) == 1 else items
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.warning("encoding", f"bytes {value[exc.start:exc.start + 4].hex(' ')} are "
                           "not valid UTF-8; replaced", row=row, column=column)
            return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value
