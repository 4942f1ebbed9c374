"""`gemma-panel plan --calibrate` on image data times what an image run runs: its vision
steps (the pixels through the tower) and its answers from the images."""

from __future__ import annotations

from gemma_panel.planning import time as plan_time
from gemma_panel.training import vision, vision_samples
from tests.training.test_image_run import image_recipe
from tests.training.tiny_vlm import build_tiny_vlm, write_colour_rows


def test_calibrating_an_image_recipe_times_image_steps_and_image_answers(tmp_path,
                                                                          monkeypatch):
    build_tiny_vlm().save_to_preset(str(tmp_path / "preset"))
    (tmp_path / "data").mkdir()
    recipe = image_recipe(tmp_path / "preset", write_colour_rows(tmp_path / "data", 3))
    batches, answered = [], []
    built, answers = vision.VisionTrainFunctions.__init__, vision_samples.image_answers

    def spy_init(self, *args, **kwargs):
        built(self, *args, **kwargs)
        step = self.train_step

        def spy_step(trainable, opt_state, frozen, batch, key):
            batches.append(batch)
            return step(trainable, opt_state, frozen, batch, key)

        self.train_step = spy_step

    def spy_answers(lm, items, *args):
        answered.append(items)
        return answers(lm, items, *args)

    monkeypatch.setattr(vision.VisionTrainFunctions, "__init__", spy_init)
    monkeypatch.setattr(vision_samples, "image_answers", spy_answers)
    c = plan_time.calibrate(recipe, steps=2, tokens=4)
    assert len(batches) == 3 and c.step_seconds > 0 and c.token_seconds > 0
    token_ids, _, loss_mask, extra = batches[0]
    assert token_ids.shape == (1, 4, 48) and loss_mask.any()
    assert extra["images"].shape[:3] == (1, 4, 1) and extra["images"].std() > 0  # pixels
    assert answered and all(item["images"] for item in answered[0])
