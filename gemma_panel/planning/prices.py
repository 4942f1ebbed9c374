"""What a run costs on cloud hardware: hours x devices x a dated price from prices.yaml.

The shipped table (prices.yaml beside this module) gives, per device and offer
(``on_demand``, ``spot``), the price per device-hour with its date and source; a user's
file (``GEMMA_PANEL_HOME/prices.yaml`` or one given) replaces rows of the same device and
offer. Every figure is an estimate and says so with its date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gemma_panel.errors import UserError

SHIPPED = Path(__file__).with_name("prices.yaml")
TABLES = ("prices", "vertex_ai")


class PriceError(UserError, ValueError):
    """A price file that cannot be read."""


@dataclass(frozen=True)
class Cost:
    """One priced way to run: where, which offer, the total and where the price is from."""

    table: str  # "prices" (Compute Engine / Cloud TPU) or "vertex_ai"
    offer: str
    usd: float
    usd_per_device_hour: float
    date: str
    source: str

    def line(self) -> str:
        where = "Vertex AI" if self.table == "vertex_ai" else "VM"
        usd = f"{self.usd:,.2f}" if self.usd >= 1 else f"{self.usd:.4f}"
        return (f"~${usd} estimate ({where}, {self.offer.replace('_', '-')}, "
                f"${self.usd_per_device_hour:g}/device-hour as of {self.date}; "
                f"{self.source})")


def load_prices(user_file: str | Path | None = None) -> dict:
    """The shipped table with the user's rows laid over it."""
    table = _read(SHIPPED)
    from gemma_panel.home import home_dir

    path = Path(user_file) if user_file else home_dir() / "prices.yaml"
    if user_file and not path.is_file():
        raise PriceError(f"{path}: no such price file; copy {SHIPPED} and edit it")
    if path.is_file():
        for name in TABLES:
            for device, offers in (_read(path).get(name) or {}).items():
                table.setdefault(name, {}).setdefault(device, {}).update(offers or {})
    return table


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PriceError(f"{path}: not a readable price table ({exc}); see {SHIPPED}") \
            from exc
    if not isinstance(data, dict):
        raise PriceError(f"{path}: a price table is a mapping; see {SHIPPED}")
    return data


def costs(price_key: str | None, devices: int, seconds: float,
          table: dict | None = None) -> list[Cost]:
    """Every listed price for this device, for ``devices`` running ``seconds``."""
    if price_key is None:
        return []
    table = table if table is not None else load_prices()
    out = []
    for name in TABLES:
        for offer, row in ((table.get(name) or {}).get(price_key) or {}).items():
            rate = float(row["usd_per_device_hour"])
            out.append(Cost(name, offer, rate * devices * seconds / 3600, rate,
                            str(row.get("date", "undated")), str(row.get("source", "?"))))
    return out
