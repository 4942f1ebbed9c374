"""The Configure tab's plan: recommended values beside the fields, and the memory fit badge.

The plan is ``planning``'s: ``recommend(recipe, stats, hardware)`` and the memory estimate
of the strategy the run would use, on this machine's devices. Two inputs are slow and are
fetched in the background (``Jobs``), once each: the devices (a child process lists them:
the server never starts JAX itself) and, per data and model settings, the training data's
token lengths (the run's own data preparation with the model's tokenizer only; no weights)
with the model's size. With both in hand, the plan itself takes milliseconds, so it is made
again on the page's thread whenever a setting changes: "apply" shows its effect at once.

Example:
    >>> cfg = ConfigModel(jobs=jobs)          # cfg.plan is this model
    >>> jobs.wait(); cfg.plan.fit["badge"]
    'fits'
    >>> cfg.plan.apply_all()                   # every recommended value into the recipe
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import param

from gemma_panel.config import RecipeError
from gemma_panel.planning.hardware import Hardware, hardware_from_report, this_cpu
from gemma_panel.planning.recommend import Recommendation, recommend
from gemma_panel.planning.report import apply_recommendations, memory_estimates, strategy_in_use

from .jobs import Jobs

GIB = 2**30


def measure_data(recipe, load: bool) -> tuple[Any, Any, str]:
    """Worker thread: (token statistics or None, model size or None, a note on what is
    missing). The tokenizer is the one the Data tab (or a run's check) has loaded; ``load``
    prepares it here (a GGUF's first import: a child process, seconds to minutes)."""
    from gemma_panel.data.report import DatasetError
    from gemma_panel.models.registry import get_model_spec
    from gemma_panel.planning.memory import ModelSize, size_without_weights
    from gemma_panel.planning.stats import dataset_stats_for

    from .data_checks import load_tokenizer, loaded_tokenizer

    source = recipe.model.source
    tokenizer = load_tokenizer(source) if load else loaded_tokenizer(source)
    spec = get_model_spec(source)
    model = ModelSize.of_spec(spec) if spec else (size_without_weights(source) if tokenizer
                                                  else None)  # prepared by now: cheap
    if tokenizer is None:
        return None, model, ("No token statistics yet: the data-free advice only. Pick the "
                             "data on the Data tab, or press 'Measure the data'.")
    note = "" if model else "The model's size is unknown: no memory estimate."
    try:
        return dataset_stats_for(recipe, tokenizer), model, note
    except DatasetError as exc:
        first = (str(exc).splitlines() or ["it cannot be read"])[0]
        return None, model, f"No token statistics ({first}): the data-free advice only."


_DEVICES_LOCK = threading.Lock()
_DEVICES: list[Future] = []  # one probe per server process, shared by its sessions


def this_machine() -> Hardware:
    """Worker thread: this machine's devices, listed once per process by a child process
    (the server never starts JAX itself)."""
    from gemma_panel.distribution.devices import probe_devices

    with _DEVICES_LOCK:
        if not _DEVICES:
            future: Future = Future()
            _DEVICES.append(future)
            try:
                future.set_result(hardware_from_report(probe_devices()))
            except Exception as exc:  # noqa: BLE001 - kept: every session sees the same
                future.set_exception(exc)
    return _DEVICES[0].result()


def fit_of(estimate, hardware: Hardware) -> dict[str, Any]:
    """The badge's content: the estimate of the strategy in use, in numbers and words."""
    return {"badge": estimate.badge, "strategy": estimate.strategy,
            "devices": estimate.devices, "total_gib": estimate.total / GIB,
            "capacity_gib": estimate.capacity / GIB if estimate.capacity else None,
            "remedies": list(estimate.remedies), "hardware": hardware.describe()}


class PlanModel(param.Parameterized):
    """Recommendations for the recipe being edited, and whether its run fits in memory."""

    config = param.ClassSelector(class_=param.Parameterized, doc="The ConfigModel.")
    recommendations = param.List(default=[], item_type=Recommendation,
                                 doc="recommend()'s settings, notes and warnings.")
    fit = param.Dict(default={}, doc="fit_of(): badge, GiB, remedies; {} before a plan.")
    status = param.String(default="", doc="What the plan waits for or lacks, in words.")
    hardware = param.ClassSelector(class_=Hardware, default=None, allow_None=True,
                                   doc="The devices planned for (None: not known yet).")

    def __init__(self, config, jobs: Jobs | None = None, hardware: Hardware | None = None,
                 **params):
        super().__init__(config=config, hardware=hardware, **params)
        self.jobs = jobs or Jobs()
        self._measured: dict = {}  # (data, model) settings -> (stats, model size, note)
        self._probing = hardware is not None
        self.refresh()

    # -- inputs ---------------------------------------------------------------------------
    def _probe(self) -> None:
        self._probing = True

        def failed(exc: BaseException) -> None:
            self.hardware = this_cpu()
            self.status = f"The devices could not be checked ({exc}); planned for the CPU."
            self.refresh()
        self.jobs.submit("plan-devices", this_machine, self._got_hardware, failed)

    def _got_hardware(self, hardware: Hardware) -> None:
        self.hardware = hardware
        self.refresh()

    def _measure(self, recipe, key, load: bool = False) -> None:
        self._measured[key] = None  # asked for

        def done(found) -> None:
            self._measured[key] = self._measured[self._key(recipe)] = found  # loaded now?
            self.refresh()

        def failed(exc: BaseException) -> None:
            self._measured[key] = (None, None, f"The data could not be measured: {exc}")
            self.refresh()
        self.jobs.submit("plan-data", lambda: measure_data(recipe, load), done, failed)

    def measure(self) -> None:
        """'Measure the data': prepare the model's tokenizer here if no tab has yet."""
        recipe = self.config.valid_recipe()
        if recipe is not None:
            self._measure(recipe, self._key(recipe), load=True)
            self.status = "Measuring the data's token lengths ..."

    @staticmethod
    def _key(recipe) -> tuple:
        """What the measurement depends on: the data and model settings, and whether the
        model's tokenizer is loaded in this process."""
        from .data_checks import loaded_tokenizer

        d = recipe.to_dict()
        loaded = loaded_tokenizer(recipe.model.source) is not None
        return repr(d["data"]), repr(d["model"]), loaded

    # -- the plan -------------------------------------------------------------------------
    @param.depends("config.settings", watch=True)
    def refresh(self) -> None:
        """Plan again for the current settings (fetching what is missing in the background)."""
        recipe = self.config.valid_recipe()
        if recipe is None:
            self.param.update(recommendations=[], fit={},
                              status="The plan waits for a valid recipe.")
            return
        if not self._probing:
            self._probe()
        key = self._key(recipe)
        if key not in self._measured:
            self._measure(recipe, key)
        measured = self._measured[key]
        if measured is None or self.hardware is None:
            self.status = "Planning: reading the data's token lengths and this machine's " \
                          "devices ..."
            return
        self._plan(recipe, *measured)

    def _plan(self, recipe, stats, model, note: str) -> None:
        hw = self.hardware
        recs = recommend(recipe, stats, hw, model)
        fit = fit_of(strategy_in_use(recipe, memory_estimates(recipe, hw, stats, model)),
                     hw) if model else {}
        self.param.update(recommendations=recs, fit=fit, status=note)

    # -- what the view offers ------------------------------------------------------------
    def settings(self) -> list[Recommendation]:
        """The recommended values (not notes or warnings), one per field."""
        return [r for r in self.recommendations if r.kind == "setting"]

    def recommendation(self, path: str) -> Recommendation | None:
        return next((r for r in self.settings() if r.field == path), None)

    def pending(self) -> list[Recommendation]:
        """Recommended values the recipe does not have yet."""
        return [r for r in self.settings() if self.config.settings.get(r.field) != r.value]

    def apply(self, path: str) -> None:
        """Set one field to its recommended value."""
        rec = self.recommendation(path)
        if rec is not None:
            self.config.set(path, rec.value)
            self.config.message = f"Applied the recommendation: {path} = {rec.value!r}."

    def apply_all(self) -> None:
        """Set every recommended value at once (checked together, as the CLI would)."""
        pending = self.pending()
        if not pending:
            self.config.message = "Every recommended value is already set."
            return
        try:
            apply_recommendations(self.config.recipe(), pending)
        except RecipeError as exc:
            self.config.message = "Not applied: " + "; ".join(exc.problems)
            return
        self.config.set_many({r.field: r.value for r in pending})
        self.config.message = (f"Applied {len(pending)} recommendations: "
                               + ", ".join(r.field for r in pending) + ".")
