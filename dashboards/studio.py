"""The studio: `panel serve dashboards/studio.py` (add --show to open a browser).

Data, Configure, Train and Compare tabs over the run store in GEMMA_PANEL_HOME; see
docs/dashboard.md.
"""

from gemma_panel.ui import create_app

create_app().servable()
