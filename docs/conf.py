"""Sphinx configuration: Pallets theme, autodoc, doctested examples, no network."""

from __future__ import annotations

import os
import sys

from pallets_sphinx_themes import get_version

sys.path.insert(0, os.path.abspath(".."))

project = "flask-webhooks"
copyright = "flask-webhooks contributors"
author = "flask-webhooks contributors"
release, version = get_version("flask-webhooks")

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "pallets_sphinx_themes",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
exclude_patterns = ["_build"]
# No intersphinx: docs build offline.

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_context = {"project_links": []}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_title = f"flask-webhooks Documentation ({version})"
html_show_sourcelink = False

# Every doctest group runs in a fresh temporary working directory, so
# apps using the default SQLite store in their instance folder leave
# nothing behind; ``Flask(__name__)`` then resolves its instance folder there.
# The handler failures the examples provoke are not logged to the build output.
doctest_global_setup = f"""
__name__ = "docs_example"
import logging as _logging, os as _os, tempfile as _tempfile
_logging.getLogger("flask_hooks").setLevel(_logging.CRITICAL)  # failures shown on purpose
_logging.getLogger("werkzeug").setLevel(_logging.ERROR)  # no access log in outputs
_cwd = {os.path.abspath(os.path.dirname(__file__))!r}
_tmp = _tempfile.TemporaryDirectory(prefix="flask-hooks-doctest-")
_os.chdir(_tmp.name)
"""
doctest_global_cleanup = """
_os.chdir(_cwd)
_tmp.cleanup()
"""
