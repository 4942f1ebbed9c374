"""The Configure tab's state: one recipe, edited field by field, always checked.

Every field, its type, default, choices and explanation come from ``gemma_panel.config``;
nothing here repeats them. Values are kept by path (``"train.learning_rate"``), typed, and
every change builds the recipe from them with ``recipe_from_values``, which checks as
``load_recipe`` does: the dashboard accepts what the CLI accepts and reports the same words.
Override text is made only for the CLI command shown.

Example:
    >>> cfg = ConfigModel()
    >>> cfg.set("train.learning_rate", 1e-4)   # cfg.settings["train.learning_rate"]
    >>> cfg.errors
    []
    >>> cfg.cli_command
    'gemma-panel run recipes/quickstart.yaml train.learning_rate=0.0001'
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

import param
import yaml

import gemma_panel
from gemma_panel.config import (
    Recipe,
    RecipeError,
    iter_fields,
    load_recipe,
    recipe_from_values,
    recipe_to_yaml,
)
from gemma_panel.data.preflight import preflight
from gemma_panel.models.listing import download_note
from gemma_panel.models.registry import MODELS

from .config_fields import (  # noqa: F401 - field_info, field_paths: imported from here too
    TOP_FIELDS,
    advanced_fields,
    changed_fields,
    defaults,
    field_info,
    field_paths,
)
from .data_checks import loaded_tokenizer
from .jobs import Jobs
from .outputs import write
from .plan_model import PlanModel
from .server_paths import (
    PathRefused,
    confine_data_path,
    data_roots,
    recipe_save_path,
    recipes_dir,
)

OTHER_SOURCE = "(a file, folder or preset)"


def default_recipe_path() -> str | None:
    """``recipes/quickstart.yaml`` of the checkout, when there is one."""
    path = Path(gemma_panel.__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    return str(path) if path.is_file() else None


def _flatten(recipe: Recipe) -> dict[str, Any]:
    data = recipe.to_dict()
    out = {"name": data["name"], "description": data["description"]}
    for section, f, _ in iter_fields():
        out[f"{section}.{f.name}"] = data[section][f.name]
    return out


def _override(path: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{path}={text.removesuffix('...').strip()}"


def _download(spec) -> str:
    """The picker's download line: nothing to fetch, or how much the first use fetches."""
    note = download_note(spec)
    return {"bundled": "nothing (ships with gemma_panel)",
            "cached": "nothing (downloaded before)"}.get(
        note, f"{note} of bfloat16 weights on first use")


class ConfigModel(param.Parameterized):
    """A recipe being edited: values by field path, problems, YAML and the CLI command."""

    settings = param.Dict(default={}, doc="Field path -> value; always every field.")
    errors = param.List(default=[], doc="Problems with the current values, in words.")
    base_path = param.String(default=None, allow_None=True,
                             doc="The recipe file the values started from.")
    saved_path = param.String(default=None, allow_None=True)
    model_choice = param.Selector(default=OTHER_SOURCE, objects=[*MODELS, OTHER_SOURCE])
    message = param.String(default="")
    data_verdict = param.Dict(default={}, doc="preflight(recipe).to_dict(): will the run's "
                              "data step pass? {} while it is being checked.")
    devices = param.String(default="", constant=True, doc="What JAX sees on this machine, "
                           "in one line, once 'Check devices' has run ('' before).")
    search = param.String(default="", doc="Words to find among the Advanced fields' names "
                          "and help texts ('': every one).")
    found = param.List(default=[], constant=True, doc="The Advanced fields ``search`` finds.")
    changed = param.List(default=[], constant=True, doc="The fields whose value differs "
                         "from the schema's default, in the tab's order.")

    def __init__(self, recipe: Recipe | None = None, base_path: str | None = "default",
                 jobs: Jobs | None = None, plan_hardware=None, **params):
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self._data_gen = 0
        if base_path == "default":
            base_path = default_recipe_path() if recipe is None else None
        self.base_path = base_path
        if recipe is None:
            recipe = load_recipe(base_path) if base_path else Recipe()
        self._base = _flatten(load_recipe(base_path)) if base_path else _flatten(Recipe())
        self.settings = _flatten(recipe)
        self._sync_model_choice()
        self.check_data()
        # Recommendations and the fit badge (plan_model.py); plan_hardware: a planning
        # Hardware to plan for instead of this machine's devices.
        self.plan = PlanModel(self, self.jobs, hardware=plan_hardware)

    # -- editing --------------------------------------------------------------------------
    def set(self, path: str, value: Any) -> None:
        """Set one field (a typed value, or text for list, dict and optional fields)."""
        if path not in self.settings:
            raise KeyError(f"{path}: not a recipe field")
        info = field_info(path) if path not in TOP_FIELDS else None
        if isinstance(value, str) and info and (info["type"] in (list, dict)
                                                or info["optional"]):
            value = _parse_text(value, info)
        self.settings = {**self.settings, path: value}
        self._check()
        if path == "model.source":
            self._sync_model_choice()
        if path.startswith("data.") or path == "model.source":
            self.check_data()

    def set_many(self, values: dict[str, Any]) -> None:
        """Set several fields at once (typed values): one check, one data check."""
        unknown = [p for p in values if p not in self.settings]
        if unknown:
            raise KeyError(f"{', '.join(unknown)}: not recipe fields")
        self.settings = {**self.settings, **values}
        self._check()
        if "model.source" in values:
            self._sync_model_choice()
        if any(p.startswith("data.") or p == "model.source" for p in values):
            self.check_data()

    @param.depends("model_choice", watch=True)
    def _picked_model(self) -> None:
        if self.model_choice != OTHER_SOURCE and self.settings.get("model.source") != \
                self.model_choice:
            self.set("model.source", self.model_choice)

    def _sync_model_choice(self) -> None:
        source = self.settings.get("model.source")
        self.model_choice = source if source in MODELS else OTHER_SOURCE

    def model_info(self) -> dict[str, Any]:
        """Size, memory and licence of the chosen registry model ({} for other sources)."""
        spec = MODELS.get(self.settings.get("model.source"))
        if spec is None:
            return {}
        return {"name": spec.name, "description": spec.description,
                "parameters": f"{spec.params / 1e6:,.0f} M",
                "weights (float32)": f"{spec.weights_bytes(4) / 2**30:.2f} GiB",
                "weights (bfloat16)": f"{spec.weights_bytes(2) / 2**30:.2f} GiB",
                "context": f"{spec.context_length:,} tokens",
                "offline": "yes (ships with gemma_panel)" if spec.bundled else
                "needs its weights (a GGUF, a Hugging Face folder or KerasHub access)",
                "download": _download(spec),
                "licence": spec.licence}

    @param.depends("settings", watch=True, on_init=True)
    def _mark_changed(self) -> None:
        write(self, changed=changed_fields(self.settings))

    @param.depends("search", watch=True, on_init=True)
    def _find(self) -> None:
        write(self, found=advanced_fields(self.search))

    def reset(self, path: str) -> None:
        """Put a field back to the schema's default."""
        self.set(path, field_info(path)["default"])
        self.message = f"Reset {path} to its default."

    def reset_all(self) -> None:
        """Put every changed field back to the schema's default (one check)."""
        back = {path: value for path, value in defaults().items() if path in self.changed}
        if back:
            self.set_many(back)
        self.message = f"Reset {len(back)} field(s) to their defaults."

    # -- the recipe -----------------------------------------------------------------------
    def overrides(self, against: dict[str, Any] | None = None) -> list[str]:
        """``section.field=value`` for each field that differs from ``against`` (the base)."""
        against = self._base if against is None else against
        return [_override(path, value) for path, value in self.settings.items()
                if against.get(path) != value]

    def recipe(self) -> Recipe:
        """The recipe, checked as the CLI checks it.

        Raises:
            RecipeError: one message per problem, each naming its field.
        """
        return recipe_from_values(self.settings)

    def valid_recipe(self) -> Recipe | None:
        """The recipe, or None while it has problems."""
        try:
            return self.recipe()
        except RecipeError:
            return None

    def check_data(self) -> None:
        """Prepare the recipe's data as its run will, in the background (``data_verdict``).

        Token lengths are included when the model's tokenizer is already loaded (the Data
        tab loads it); Start checks them in any case.
        """
        self._data_gen += 1
        gen, recipe = self._data_gen, self.valid_recipe()
        self.data_verdict = {}
        if recipe is None:
            return

        def done(verdict: dict) -> None:
            if gen == self._data_gen:
                self.data_verdict = verdict

        def failed(exc: BaseException) -> None:
            done({"ok": False, "ready": False, "fix": {},
                  "message": f"the data could not be checked: {exc}"})

        self.jobs.submit("config-data", lambda: preflight(
            recipe, loaded_tokenizer(recipe.model.source)).to_dict(), done, failed)

    def check_devices(self) -> None:
        """Fill ``devices`` from a child process (the server never starts JAX itself)."""
        from gemma_panel.distribution.devices import probe_devices

        write(self, devices="checking the devices...")
        self.jobs.submit("config-devices", lambda: probe_devices().summary(),
                         lambda line: write(self, devices=line),
                         lambda exc: write(self, devices=str(exc)))

    def apply_fix(self) -> None:
        """Set the fields the data verdict names (e.g. the template the data needs)."""
        for path, value in dict(self.data_verdict.get("fix") or {}).items():
            self.set(path, value)
            self.message = f"Set {path} to {value}."

    def _check(self) -> None:
        try:
            self.recipe()
            self.errors = []
        except RecipeError as exc:
            self.errors = list(exc.problems)

    @param.depends("settings", "base_path", "saved_path")
    def yaml_text(self) -> str:
        try:
            return recipe_to_yaml(self.recipe())
        except RecipeError as exc:
            return "# not valid yet:\n" + "\n".join(f"#   {p}" for p in exc.problems)

    @property
    def cli_command(self) -> str:
        """The command that runs this same recipe from a terminal."""
        if self.saved_path:
            return f"gemma-panel run {shlex.quote(self._shown(self.saved_path))}"
        base = self._shown(self.base_path) if self.base_path else "EMPTY.yaml"
        parts = ["gemma-panel", "run", shlex.quote(base), *map(shlex.quote, self.overrides())]
        return " ".join(parts)

    @property
    def cli_note(self) -> str:
        """What the command assumes, when it is not a file this recipe came from."""
        if self.saved_path or self.base_path:
            return ""
        return ("EMPTY.yaml: any empty file (every field then starts at its default); or save "
                "the recipe and run the saved file.")

    @staticmethod
    def _shown(path: str) -> str:
        try:
            return str(Path(path).resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    # -- files ------------------------------------------------------------------------------
    def save(self, name: str | None = None, overwrite: bool = False) -> Path:
        """Write the recipe as commented YAML to GEMMA_PANEL_HOME/recipes/NAME.yaml.

        NAME defaults to the recipe's name; an existing file is replaced only with
        ``overwrite``.

        Raises:
            RecipeError: the recipe is not valid.
            PathRefused: NAME is not a plain file name, or the file exists.
        """
        recipe = self.recipe()
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in recipe.name)
        path = recipe_save_path(name, safe or "recipe", overwrite)
        path.write_text(recipe_to_yaml(recipe))
        self.saved_path = str(path)
        self.message = f"Saved to {path}"
        return path

    def save_from_page(self, name: str | None, overwrite: bool) -> None:
        """``save`` from the page: a refusal becomes ``message`` instead of an exception."""
        try:
            self.save(name, overwrite=overwrite)
        except (RecipeError, PathRefused, OSError) as exc:  # a bad recipe, name or folder
            self.message = f"Not saved: {exc}"

    def load_server_path(self, path: str) -> None:
        """``load`` a path typed into the page: only inside the data roots or the recipes."""
        try:
            confine_data_path(path, [*data_roots(), recipes_dir()])
        except PathRefused as exc:
            self.message = f"Not loaded: {exc}"
            return
        self.load(path)

    def load(self, path: str | Path) -> None:
        """Replace every value with a recipe file's (YAML is read with safe_load only)."""
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            self.errors = list(exc.problems)
            self.message = f"Not loaded: {path} has {len(exc.problems)} problem(s)"
            return
        self.base_path, self.saved_path = str(path), None
        self._base = _flatten(recipe)
        self.settings = _flatten(recipe)
        self.errors = []
        self._sync_model_choice()
        self.message = f"Loaded {path}"
        self.check_data()

    def load_text(self, text: str | bytes, name: str = "uploaded.yaml") -> None:
        """Load a recipe uploaded from the browser (stored under GEMMA_PANEL_HOME first)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]  # never over another
        path = recipes_dir() / f"{digest}-{safe.removesuffix('.yml').removesuffix('.yaml')}.yaml"
        path.write_text(text)
        self.load(path)


def _parse_text(text: str, info: dict) -> Any:
    """Text from a box for a list, dict or optional field: YAML, or comma lists."""
    text = text.strip()
    if info["optional"] and text.lower() in ("", "none", "null"):
        return None
    if info["type"] is list and text and not text.startswith("["):
        return [t.strip() for t in text.split(",") if t.strip()]
    if info["type"] is str:
        return text
    try:
        return yaml.safe_load(text) if text else info["type"]()
    except yaml.YAMLError:
        return text  # load_recipe names the field and says what it expected
