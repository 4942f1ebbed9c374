"""The Panel dashboard: view-models (``param.Parameterized``) and the views that render them.

Only this package imports Panel, param and Bokeh; the library below it knows nothing of
them. ``create_app()`` is the whole studio (served or in a notebook); ``live_chart`` and
``compare_view`` are pieces for notebook cells. See docs/dashboard.md.
"""

from .app import Studio, compare_view, create_app, live_chart
from .compare_model import CompareModel
from .config_model import ConfigModel
from .data_model import DataModel
from .jobs import Jobs
from .runs_model import MetricFeed, RunsModel
from .uploads import UploadError, save_upload

__all__ = [
    "CompareModel",
    "ConfigModel",
    "DataModel",
    "Jobs",
    "MetricFeed",
    "RunsModel",
    "Studio",
    "UploadError",
    "compare_view",
    "create_app",
    "live_chart",
    "save_upload",
]
