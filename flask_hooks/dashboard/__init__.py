"""The operator's dashboard: deliveries, failures, rotations, and replays.

``Dashboard(app, url_prefix="/hooks", allow=...)``; documented in docs/dashboard.rst.
"""

from .extension import Dashboard as Dashboard
