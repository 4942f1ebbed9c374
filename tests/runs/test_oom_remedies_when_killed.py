"""The OOM killer's remedies are worked out when the store finds the killed worker, from the
run folder's recipe and the devices the worker recorded: not at every run's start (a GGUF
source's remedies cost a second of hashing)."""

from __future__ import annotations

from gemma_panel.config import recipe_to_yaml
from gemma_panel.runs import out_of_memory
from tests.runs.conftest import fake_recipe


def _spy_and_counter(monkeypatch):
    """Calls of ``remedies_for``, and a settable OOM-kill counter."""
    calls, counter = [], {"kills": 3}
    real = out_of_memory.remedies_for
    monkeypatch.setattr(out_of_memory, "remedies_for", lambda recipe, hardware=None: (
        calls.append((recipe, hardware)), real(recipe, hardware))[1])
    monkeypatch.setattr(out_of_memory, "oom_kill_counts",
                        lambda: {"/proc/vmstat": counter["kills"]})
    return calls, counter


def _started_worker(run_dir):
    """What the worker does: the sink at its start, then training starts."""
    recipe = fake_recipe("train.batch_size=8", "data.sequence_length=1024", name="killed")
    (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    sink = out_of_memory.BaselineSink(run_dir, recipe)
    sink.on_start({"total_steps": 10, "start_step": 0, "tokens_per_step": 8})


def test_no_remedies_at_the_start_they_come_from_the_folder_when_the_oom_killer_struck(
        tmp_path, monkeypatch):
    calls, counter = _spy_and_counter(monkeypatch)
    _started_worker(tmp_path)
    assert calls == []  # starting a run works nothing out
    assert out_of_memory._read(tmp_path / out_of_memory.BASELINE_NAME)["devices"]["backend"] \
        == "cpu"
    counter["kills"] += 1  # the kernel killed a process in the worker's cgroup
    message = out_of_memory.killed_by_oom(tmp_path)
    assert len(calls) == 1
    recipe, hardware = calls[0]
    assert (recipe.train.batch_size, recipe.data.sequence_length) == (8, 1024)  # recipe.yaml's
    assert hardware.backend == "cpu" and hardware.count >= 1  # the worker's devices
    assert message.startswith("out of memory (the kernel's OOM killer"), message
    assert "1) train.batch_size=2 with train.gradient_accumulation x4" in message, message


def test_a_vanished_worker_not_killed_by_the_oom_killer_costs_no_remedies(tmp_path,
                                                                         monkeypatch):
    calls, _ = _spy_and_counter(monkeypatch)
    _started_worker(tmp_path)
    assert out_of_memory.killed_by_oom(tmp_path) is None
    assert calls == []
