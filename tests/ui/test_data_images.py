"""The Data tab's image preview: thumbnails beside the text, small and bounded in count."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from gemma_panel.data.images import THUMB_PX, THUMB_ROWS, THUMBS_PER_ROW
from gemma_panel.ui import DataModel
from gemma_panel.ui.data_view import thumbnails_html


def _llava_file(folder, rows: int, images_per_row: int = 1):
    (folder / "img").mkdir()
    Image.new("RGB", (400, 300), (10, 200, 10)).save(folder / "img" / "big.png")
    (folder / "img" / "bad.png").write_text("not an image")
    lines = []
    for i in range(rows):
        image = ["img/bad.png" if i == 1 else "img/big.png"] * images_per_row
        lines.append({"image": image if images_per_row > 1 else image[0],
                      "conversations": [
                          {"from": "human", "value": "<image>" * images_per_row + f"Q{i}?"},
                          {"from": "gpt", "value": f"Green {i}."}]})
    path = folder / "llava.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_image_rows_get_small_thumbnails_beside_their_text(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    data = DataModel(model_source="")
    data.load(str(_llava_file(tmp_path, rows=3)))
    data.jobs.wait()
    thumbs = data.thumbnails
    assert [t["row"] for t in thumbs] == [1, 2, 3]
    small = _decoded(thumbs[0]["images"][0])
    assert max(small.size) <= THUMB_PX and small.size == (96, 72)  # aspect kept
    assert thumbs[1]["images"] == [None]  # the undecodable one: marked, not dropped
    assert "Q0?" in thumbs[0]["text"] and "Green 0." in thumbs[0]["text"]
    page = thumbnails_html(thumbs)
    assert page.count("<img ") == 2 and "does not read" in page


def test_thumbnails_are_bounded_in_rows_and_per_row(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    data = DataModel(model_source="")
    data.load(str(_llava_file(tmp_path, rows=THUMB_ROWS + 5, images_per_row=6)))
    data.jobs.wait()
    assert len(data.thumbnails) == THUMB_ROWS
    assert all(len(t["images"]) == THUMBS_PER_ROW and t["more"] == 2
               for t in data.thumbnails)
    assert sum(len(u) for t in data.thumbnails for u in t["images"] if u) < 200_000


def test_a_text_dataset_has_no_thumbnails(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    data = DataModel(model_source="")
    data.load(str(path))
    data.jobs.wait()
    assert data.thumbnails == [] and data.report["ok"]


def test_a_thumbnail_outside_the_data_roots_is_not_shown(tmp_path, monkeypatch):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(elsewhere / "private.png")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(root / "mine.png")
    rows = [{"image": str(elsewhere / "private.png"), "prompt": "Q?", "response": "A."},
            {"image": "../elsewhere/private.png", "prompt": "Q?", "response": "A."},
            {"image": "mine.png", "prompt": "Q?", "response": "A."}]
    path = root / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(root))
    data = DataModel(model_source="")
    data.load(str(path))
    data.jobs.wait()
    assert [t["images"][0] is None for t in data.thumbnails] == [True, True, False]
