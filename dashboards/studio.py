"""The studio: `panel serve dashboards/studio.py` (add --show to open a browser).

Data, Configure, Train and Compare tabs over the run store in GEMMA_PANEL_HOME; see
docs/dashboard.md. Other machines get only a refusal unless the server asks for a login
(`--basic-auth PASSWORD --cookie-secret SECRET`); `gemma-panel dashboard --address ADDRESS`
sets that up, and also caps websocket messages at one upload chunk.
"""

from gemma_panel.ui.serve import studio_page

studio_page().servable()
