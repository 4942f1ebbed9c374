"""Datasets with images: which images a row has, and the data check's report on each."""

import json

import pytest
from PIL import Image

from gemma_panel.data.check import check_dataset
from gemma_panel.data.images import (
    IMAGE_TOKEN,
    ImageRefused,
    image_column,
    inspect_image,
    resolve_image,
    row_image_refs,
)
from gemma_panel.data.messages import Turn, normalize_messages
from gemma_panel.data.report import DatasetError


def write_images(folder):
    """A good PNG and JPEG, a 4x4 PNG, a truncated JPEG and a text file named .png."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (200, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (40, 40), (30, 30, 200)).save(folder / "blue.jpg", quality=90)
    Image.new("RGB", (4, 4)).save(folder / "tiny.png")
    whole = (folder / "blue.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "fake.png").write_text("not an image")
    return folder


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def llava(image, question="<image>\nWhat colour is it?", answer="Red."):
    return {"image": image, "conversations": [{"from": "human", "value": question},
                                              {"from": "gpt", "value": answer}]}


def by_code(report):
    return {code: [(p.row, p.severity) for p in kept] for code, kept in report.examples.items()}


def test_each_bad_image_is_reported_with_its_row(tmp_path):
    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "llava.jsonl", [
        llava("img/red.png"), llava("img/blue.jpg"), llava("img/gone.png"),
        llava("img/fake.png"), llava("img/cut.jpg"), llava("img/tiny.png"),
        llava("https://example.org/cat.png"), llava(f"file://{tmp_path}/img/red.png"),
    ])
    report = check_dataset(path)
    found = by_code(report)
    assert found["image_missing"] == [(3, "error")]
    assert found["image_unreadable"] == [(4, "error"), (5, "error")]
    assert found["image_too_small"] == [(6, "warning")]
    assert found["image_url"] == [(7, "error")]
    assert "not downloaded" in report.examples["image_url"][0].message
    assert report.examples["images"][0].message.startswith("8 row(s) have 8 image(s)")
    assert not report.ok and report.task == "chat"
    assert "image" in report.to_text()  # the CLI's text names the kinds


def test_good_images_leave_the_report_clean_of_image_errors(tmp_path):
    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "ok.jsonl", [llava("img/red.png"), llava("img/blue.jpg",
                                                                     answer="Blue.")])
    report = check_dataset(path)
    assert report.ok and report.rows_usable == 2
    assert set(report.counts) == {"images"}


def test_a_huge_image_is_too_large_before_it_is_decoded(tmp_path):
    Image.new("1", (16_385, 16)).save(tmp_path / "wide.png")
    code, severity, message = inspect_image(tmp_path / "wide.png")
    assert (code, severity) == ("image_too_large", "error") and "16385x16" in message


def test_openai_image_parts_become_the_image_token_and_are_checked(tmp_path):
    write_images(tmp_path / "img")
    rows = [{"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": path}},
                {"type": "text", "text": "What is it?"}]},
             {"role": "assistant", "content": "A square."}]}
            for path in ("img/red.png", "img/nothing.jpg")]
    turns, problems = normalize_messages(rows[0]["messages"])
    assert problems == [] and turns[0] == Turn("user", IMAGE_TOKEN + "What is it?")
    report = check_dataset(jsonl(tmp_path / "openai.jsonl", rows))
    assert by_code(report)["image_missing"] == [(2, "error")]
    assert report.rows_usable == 2


def test_a_csv_image_column_is_relative_to_the_csv(tmp_path):
    write_images(tmp_path / "data" / "img")
    csv = tmp_path / "data" / "pairs.csv"
    csv.write_text("image,prompt,response\nimg/red.png,Colour?,Red\nimg/none.png,Colour?,-\n")
    report = check_dataset(csv)
    assert report.task == "instruction"
    assert by_code(report)["image_missing"] == [(2, "error")]


def test_placeholders_must_match_the_images(tmp_path):
    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "two.jsonl", [
        llava(["img/red.png", "img/blue.jpg"], question="<image> and <image>: same colour?",
              answer="No."),
        llava(["img/red.png"], question="<image> and <image>: same colour?", answer="No."),
    ])
    assert by_code(check_dataset(path))["image_count"] == [(2, "error")]


@pytest.mark.parametrize("value, expected", [
    ("a.png", ["a.png"]), (["a.png", "b.jpg"], ["a.png", "b.jpg"]),
    ('["a.png", "b.jpg"]', ["a.png", "b.jpg"]), ({"path": "a.png"}, ["a.png"]), ("", []),
])
def test_image_column_values(value, expected):
    assert row_image_refs({"image": value}, "image", None) == expected


def test_image_columns_are_found_by_name():
    assert image_column(["id", "Image Path", "question"]) == "Image Path"
    assert image_column(["prompt", "response"]) is None


def test_web_urls_are_refused_in_one_sentence(tmp_path):
    with pytest.raises(ImageRefused, match="not downloaded; save them beside the data file"):
        resolve_image("http://example.org/a.png", tmp_path)
    assert resolve_image("file:///x/a%20b.png", tmp_path).as_posix() == "/x/a b.png"
    assert resolve_image("a.png", tmp_path) == tmp_path / "a.png"


@pytest.mark.parametrize("pack, said", [
    ("true", ("image datasets are not packed (each image's vision tokens must stay in one "
              "example's row): set data.pack=false")),
    # the recipe's default model, Gemma 3 270M, reads text only (image runs: test_image_run)
    ("false", ("the model gemma3-270m (KerasHub preset gemma3_instruct_270m) cannot train "
               "on this data's images, as it reads text only: set model.source to a preset "
               "with a vision tower, e.g. gemma3_instruct_4b or gemma4_instruct_2b")),
])
def test_a_run_of_image_data_is_refused_before_it_drops_the_images(tmp_path, pack, said):
    from gemma_panel.config import load_recipe
    from gemma_panel.data.preflight import preflight

    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "ok.jsonl", [llava("img/red.png", answer=f"Red {i}.")
                                         for i in range(10)])
    verdict = preflight(load_recipe(None, [f"data.train_path={path}", f"data.pack={pack}"]))
    assert not verdict.ok and said in verdict.message, verdict.message


def test_a_stray_image_named_column_of_text_is_ignored_with_a_warning(tmp_path):
    """A text dataset whose ``picture`` column holds words trains on its text; the data
    report says the column is not read as images (it was refused as missing images)."""
    from gemma_panel.config import load_recipe
    from gemma_panel.data.preflight import preflight

    path = jsonl(tmp_path / "text.jsonl", [
        {"prompt": f"Describe scene {i}.", "response": f"Scene {i} is calm.",
         "picture": "a sunset over the sea" if i % 2 else ""} for i in range(10)])
    verdict = preflight(load_recipe(None, [f"data.train_path={path}"]))
    assert verdict.ok, verdict.message
    report = check_dataset(path)
    assert report.ok and not report.has("images") and not report.has("image_missing")
    [warning] = report.examples["image_column_ignored"]
    assert warning.severity == "warning" and warning.message.startswith(
        "column 'picture' is ignored: it is named like an image column, but 5 row(s) name "
        "no image file there (e.g. 'a sunset over the sea')")


def test_image_paths_in_an_image_named_column_are_still_images(tmp_path):
    path = jsonl(tmp_path / "img.jsonl", [{"prompt": "Colour?", "response": "Red.",
                                           "img": "gone.png"}])
    assert by_code(check_dataset(path))["image_missing"] == [(1, "error")]


def test_images_a_template_does_not_use_are_ignored_with_a_warning(tmp_path):
    """The plain-text template has no place for images: the run trains the text and says
    so, instead of refusing the data (as it did, whatever the template)."""
    from gemma_panel.config import load_recipe
    from gemma_panel.data.preflight import prepare_recipe_data

    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"Colour {i}?", "response": "Red.",
                                             "image": "img/red.png"} for i in range(10)])
    recipe = load_recipe(None, [f"data.train_path={path}", "data.template=completion"])
    report = prepare_recipe_data(recipe).report
    [warning] = report.examples["images_ignored"]
    assert warning.message.startswith("the template 'completion' puts no images in its "
                                      "prompts, so the images are ignored")
    with pytest.raises(DatasetError, match="not packed"):  # the chat format uses them
        prepare_recipe_data(load_recipe(None, [f"data.train_path={path}"]))


def test_the_same_question_about_two_images_is_two_examples(tmp_path):
    """Review finding: the duplicate check keyed on the text alone, so an image dataset's
    rows asking the same question of different pictures were dropped as duplicates."""
    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "same.jsonl", [llava("img/red.png"), llava("img/blue.jpg"),
                                           llava("img/red.png")])
    report = check_dataset(path)
    assert by_code(report).get("duplicate") == [(3, "warning")]  # only the repeated picture


def test_the_same_message_about_two_images_is_two_examples(tmp_path):
    """Review finding: a chat row's image parts became the image token in its text, so
    the duplicate key of the same message about two pictures was the same."""
    write_images(tmp_path / "img")

    def chat(path):
        return {"messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": path}},
                    {"type": "text", "text": "What is it?"}]},
                 {"role": "assistant", "content": "A square."}]}

    rows = [chat("img/red.png"), chat("img/blue.jpg"), chat("img/red.png")]
    report = check_dataset(jsonl(tmp_path / "chat.jsonl", rows))
    assert by_code(report).get("duplicate") == [(3, "warning")]  # only the repeated picture


def test_relative_images_beside_a_cloud_data_file_are_refused_in_one_sentence(tmp_path):
    """Review finding: the check read them relative to the working folder, the preview and
    the trainer relative to a mangled 'gs:/bucket' folder; now all three refuse them."""
    from gemma_panel.data.images import ImageRefused, image_base, resolve_image

    assert image_base(tmp_path / "train.jsonl") == tmp_path
    assert image_base("gs://bucket/data/train.jsonl") is None
    with pytest.raises(ImageRefused, match="relative to a data file in cloud storage"):
        resolve_image("img/red.png", image_base("gs://bucket/data/train.jsonl"))
    write_images(tmp_path / "img")
    absolute = str(tmp_path / "img" / "red.png")  # an absolute local path is still read
    assert resolve_image(absolute, None) == tmp_path / "img" / "red.png"


def test_ignored_images_name_the_model_when_it_cannot_train_them(tmp_path):
    """Review finding: the warning sent a Gemma 4 or text-only recipe to data.template=gemma,
    whose images that model would then refuse; it now says what the model does instead."""
    from gemma_panel.config import load_recipe
    from gemma_panel.data.preflight import prepare_recipe_data

    write_images(tmp_path / "img")
    path = jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"Colour {i}?", "response": "Red.",
                                             "image": "img/red.png"} for i in range(10)])
    for source, why in (("gemma3n-e2b", "300M-parameter vision tower"),
                        ("gemma3-270m", "text only")):
        recipe = load_recipe(None, [f"data.train_path={path}", "data.template=completion",
                                    f"model.source={source}"])
        [warning] = prepare_recipe_data(recipe).report.examples["images_ignored"]
        assert "the text alone is trained; the model " + source in warning.message
        assert why in warning.message and "data.template=gemma" not in warning.message
    # a Gemma 4 trains images in its own chat format: the warning names that template
    recipe = load_recipe(None, [f"data.train_path={path}", "data.template=completion",
                                "model.source=gemma4-e2b"])
    [warning] = prepare_recipe_data(recipe).report.examples["images_ignored"]
    assert warning.message.endswith("use data.template=gemma4 (Gemma 4's chat format) to "
                                    "train on them")


def test_image_bytes_inside_a_parquet_file_are_refused_in_one_sentence(tmp_path):
    """Review finding: a Hugging Face datasets Image column saved to Parquet ({"bytes",
    "path"}) was read by its path alone, a name with no file beside the data, and reported
    missing; the bytes are now named as what is not read."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    write_images(tmp_path / "img")
    png = (tmp_path / "img" / "red.png").read_bytes()
    table = pa.table({
        "image": [{"bytes": png, "path": "red.png"}, {"bytes": None, "path": "img/red.png"}],
        "question": ["<image>\nWhat colour is it?"] * 2, "answer": ["Red."] * 2})
    pq.write_table(table, tmp_path / "hf.parquet")
    report = check_dataset(tmp_path / "hf.parquet")
    assert by_code(report)["image_url"] == [(1, "error")]  # the second row names a file
    assert "given as bytes inside the data file" in report.examples["image_url"][0].message
    assert "image_missing" not in by_code(report)
