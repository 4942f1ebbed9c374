"""``read_gguf`` gives what ``gguf.GGUFReader`` gives: every field's name, types and contents,
every tensor's name, type, shape, sizes, offset and data: on files written here and (slow)
on the bundled Gemma 3 270M, llama.cpp's own file."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from gemma_panel.models.gguf_reader import Field, read_gguf
from tests.models.tiny_gguf import write_tiny_gemma_gguf


def assert_same(path) -> None:
    theirs, ours = gguf.GGUFReader(path), read_gguf(path)
    assert list(ours.fields) == list(theirs.fields)
    for name, field in theirs.fields.items():
        assert ours.fields[name].types == field.types, name
        got, want = ours.fields[name].contents(), field.contents()
        assert got == want and type(got) is type(want), name
        if isinstance(want, list) and want:
            assert type(got[0]) is type(want[0]), name
    assert (ours.alignment, ours.data_offset) == (theirs.alignment, theirs.data_offset)
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, their in zip(ours.tensors, theirs.tensors):
        assert mine.tensor_type == their.tensor_type, mine.name
        assert mine.shape.tolist() == their.shape.tolist(), mine.name
        assert (mine.n_elements, mine.n_bytes, mine.data_offset) == (
            their.n_elements, their.n_bytes, their.data_offset), mine.name
        assert mine.data.dtype == their.data.dtype and mine.data.shape == their.data.shape
        assert np.array_equal(mine.data, their.data), mine.name


def test_a_tiny_gemma_with_quantized_tensors_reads_as_gguf_reads_it(tmp_path):
    path = write_tiny_gemma_gguf(tmp_path / "tiny.gguf", "gemma3", layers=2)  # Q8_0 and F32
    assert {t.tensor_type.name for t in read_gguf(path).tensors} >= {"Q8_0", "F32"}
    assert_same(path)


def test_every_value_type_reads_as_gguf_reads_it(tmp_path):
    path = tmp_path / "values.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 0.1)  # not a float64: 0.1 as float32 read back
    writer.add_uint64("t.u64", 2**63 + 5)
    writer.add_int64("t.i64", -(2**62))
    writer.add_float64("t.f64", 0.1)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "pièce ▁ <start_of_turn>")
    writer.add_array("t.ints", [1, -2, 3])
    writer.add_array("t.floats", [0.5, -1.25])
    writer.add_array("t.strs", ["a", "", "▁▁b"])
    writer.add_array("t.bools", [True, False])
    writer.add_tensor("f16", np.arange(12, dtype=np.float16).reshape(3, 4))
    writer.add_tensor("i32", np.arange(6, dtype=np.int32).reshape(2, 3))
    q = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32),
                             gguf.GGMLQuantizationType.Q4_0)
    writer.add_tensor("q4", q, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert_same(path)
    fields = read_gguf(path).fields
    assert fields["t.f32"].contents() == float(np.float32(0.1)) != 0.1


def test_a_file_it_does_not_parse_itself_is_read_by_gguf(tmp_path):
    path = tmp_path / "nested.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_array("t.nested", [[1, 2], [3]])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    reader = read_gguf(path)
    assert isinstance(reader, gguf.GGUFReader)
    assert not isinstance(reader.fields["t.nested"], Field)


def test_a_truncated_file_raises(tmp_path):
    whole = write_tiny_gemma_gguf(tmp_path / "tiny.gguf", "gemma3", layers=1)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises((ValueError, IndexError)):
        read_gguf(cut)


@pytest.mark.slow
def test_the_bundled_270m_reads_as_gguf_reads_it(real_gguf_path):
    """llama.cpp's own file: 262,144 pieces, K-quant tensors (gguf.GGUFReader: ~26 s)."""
    assert {t.tensor_type.name for t in read_gguf(real_gguf_path).tensors} >= {"Q4_K", "Q6_K"}
    assert_same(real_gguf_path)
