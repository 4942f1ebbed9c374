"""A GGUF file's metadata and tensors, read as ``gguf.GGUFReader`` reads them, but fast.

``gguf.GGUFReader`` makes a NumPy memmap view for every element of every metadata array:
for a Gemma vocabulary (262,144 pieces, their scores and types) that is millions of views,
27.6 s for the bundled Gemma 3 270M on a 2-core AMD EPYC, paid by every process that loads
or exports from a GGUF. :func:`read_gguf` parses the same header with ``struct`` and whole
NumPy arrays (``python benchmarks/gguf_reader.py`` times both on that file) and
gives what this project reads of a ``GGUFReader``: ``fields`` (each with ``name``,
``types`` and ``contents()``, the same values and types) and ``tensors`` (``name``,
``tensor_type``, ``shape``, ``n_elements``, ``n_bytes``, ``data_offset`` and ``data``, a
memmap view of the same dtype and shape). A file it does not handle (big-endian, nested
arrays) is read by ``gguf.GGUFReader`` itself. ``tests/models/test_gguf_reader.py`` checks
both readers agree on every field and tensor.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

__all__ = ["read_gguf"]


class Field(NamedTuple):
    """One metadata key: its value types (``[ARRAY, item type]`` for a non-empty array) and
    value (a list for an array), as ``gguf.ReaderField`` gives them."""

    name: str
    types: list
    value: Any

    def contents(self) -> Any:
        return self.value


class Tensor(NamedTuple):
    name: str
    tensor_type: Any
    shape: np.ndarray  # as stored: the fastest-varying dimension first
    n_elements: int
    n_bytes: int
    data_offset: int
    data: np.ndarray


class Header(NamedTuple):
    fields: OrderedDict
    tensors: list
    alignment: int
    data_offset: int


class _Unhandled(Exception):
    """A layout this reader leaves to ``gguf.GGUFReader``."""


def read_gguf(path: str | os.PathLike):
    """The file's header (fields and tensors) as a ``gguf.GGUFReader`` would give it."""
    try:
        return _read(os.fspath(path))
    except _Unhandled:
        import gguf

        return gguf.GGUFReader(path)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # GGUFValueType: struct format (little-endian)
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buffer):
        self.buffer, self.at = buffer, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buffer, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.unpack("Q")
        start, self.at = self.at, self.at + length
        return str(self.buffer[start:self.at], encoding="utf-8")

    def value(self, kind: int) -> tuple[list, Any]:
        """(types, value) of one value of GGUF type ``kind`` at the cursor."""
        from gguf.constants import GGUFValueType

        if kind == _STRING:
            return [GGUFValueType.STRING], self.string()
        if kind in _SCALARS:
            return [GGUFValueType(kind)], self.unpack(_SCALARS[kind])
        if kind != _ARRAY:
            raise _Unhandled(kind)
        item, count = self.unpack("IQ")
        if count == 0:
            return [GGUFValueType.ARRAY], []
        if item == _STRING:
            return [GGUFValueType.ARRAY, GGUFValueType.STRING], [self.string()
                                                                for _ in range(count)]
        if item not in _SCALARS:
            raise _Unhandled(item)
        dtype = np.dtype("<" + _SCALARS[item].replace("?", "b1"))
        values = np.frombuffer(self.buffer, dtype, count, self.at)
        self.at += dtype.itemsize * count
        return [GGUFValueType.ARRAY, GGUFValueType(item)], values.tolist()


def _read(path: str) -> Header:
    from gguf.constants import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFValueType

    with open(path, "rb") as file:
        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    cursor = _Cursor(buffer)
    magic, version, tensor_count, kv_count = cursor.unpack("IIQQ")
    if magic != GGUF_MAGIC or version not in (2, 3):  # other versions, big-endian files
        raise _Unhandled(version)
    fields = OrderedDict()
    for name, kind, value in (("GGUF.version", GGUFValueType.UINT32, version),
                              ("GGUF.tensor_count", GGUFValueType.UINT64, tensor_count),
                              ("GGUF.kv_count", GGUFValueType.UINT64, kv_count)):
        fields[name] = Field(name, [kind], value)
    for _ in range(kv_count):
        name = cursor.string()
        if name in fields:
            raise KeyError(f"Duplicate {name} in {path}")
        fields[name] = Field(name, *cursor.value(cursor.unpack("I")))
    infos = [_tensor_info(cursor) for _ in range(tensor_count)]
    if len({info[0] for info in infos}) != len(infos):
        raise ValueError(f"Found duplicated tensor names in {path}")
    alignment = fields["general.alignment"].value if "general.alignment" in fields \
        else GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in fields and fields["general.alignment"].types != [
            GGUFValueType.UINT32]:
        raise ValueError("Bad type for general.alignment field")
    start = -(-cursor.at // alignment) * alignment
    data = np.memmap(path, mode="r")
    return Header(fields, [_tensor(data, start, *info) for info in infos], alignment, start)


def _tensor_info(cursor: _Cursor) -> tuple:
    name = cursor.string()
    n_dims = cursor.unpack("I")
    dims = np.frombuffer(cursor.buffer, "<u8", n_dims, cursor.at).copy()
    cursor.at += 8 * n_dims
    raw_type, offset = cursor.unpack("IQ")
    return name, dims, raw_type, offset


_PLAIN = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8,
          "I16": np.int16, "I32": np.int32, "I64": np.int64}


def _tensor(data: np.memmap, start: int, name: str, dims: np.ndarray, raw_type: int,
            offset: int) -> Tensor:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import quant_shape_to_byte_shape

    kind = GGMLQuantizationType(raw_type)
    n_elements = int(np.prod(dims))
    block, type_size = GGML_QUANT_SIZES[kind]
    n_bytes = n_elements * type_size // block
    shape = tuple(reversed(dims.tolist()))
    item = _PLAIN.get(kind.name)
    if item is None:
        item, count, shape = np.uint8, n_bytes, quant_shape_to_byte_shape(shape, kind)
    else:
        count = n_elements
    begin = start + offset
    view = data[begin:begin + np.dtype(item).itemsize * count].view(item)[:count]
    return Tensor(name, kind, dims, n_elements, n_bytes, begin, view.reshape(shape))
