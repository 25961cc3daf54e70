"""The documentation against the code, as a newcomer reads one beside the other.

The public names of the contract are in the API reference, and what the
pages link to in the packages resolves (a link that does not is rendered as
plain text, silently: ``-W`` does not see it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: What a user looks up in the API reference: the contract's public names.
PUBLIC = {
    "flask_hooks.Hooks",
    "flask_hooks.Event",
    "flask_hooks.Retry",
    "flask_hooks.ConfigError",
    "flask_hooks.InFlight",
    "flask_hooks.inbox.Inbox",
    "flask_hooks.inbox.Delivery",
    "flask_hooks.inbox.Delivery.owed",
    "flask_hooks.inbox.Attempt",
    "flask_hooks.providers.Provider",
    "flask_hooks.defer.CeleryQueue",
    "flask_hooks.defer.RQQueue",
    "flask_hooks.noukai.fetch_full_output",
    "flask_hooks.dashboard.Dashboard",
    "flask_hooks.stores.DedupeStore",
    "flask_hooks.stores.redis.RedisStore",
    "flask_hooks.stores.sql.SqlStore",
    "flask_hooks.stores.sql.connection",
    "flask_hooks.stores.sql.metadata",
    "pytest_hooks.delivery.SignedDelivery",
    "pytest_hooks.sender.Report",
    "pytest_hooks.presets.Preset",
}


#: A page's link to the packages that Sphinx could not resolve (``-n``). Autodoc's
#: type hints are reported without a line number, and name no page: not these.
UNRESOLVED = re.compile(
    r"^(?P<page>\S+\.rst):(?P<line>\d+): WARNING: py:\w+ reference target not found: "
    r"(?P<target>(?:flask_hooks|pytest_hooks)\S*)",
    re.M,
)

#: A docstring's link that Sphinx could not resolve, with the docstring's line (a role written
#: in it; autodoc's type hints have none).
UNRESOLVED_IN_DOCSTRING = re.compile(
    r"docstring of (?P<object>\S+):\d+: WARNING: py:\w+ reference target not found: (?P<target>\S+)"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs, built as ``make docs`` does but nitpicky (``warnings.txt``: unresolved links)."""
    pytest.importorskip("sphinx", reason="building the docs needs the docs' requirements")
    pytest.importorskip("pallets_sphinx_themes", reason="building the docs needs the docs' requirements")
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-n", "-q", "-b", "html", "-w", str(out / "warnings.txt")]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def inventory(built: Path) -> set[str]:
    """The Python objects the built docs define, read from their ``objects.inv``."""
    raw = (built / "html" / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four text lines, then the zlib-compressed entries
        header_end = raw.index(b"\n", header_end) + 1
    entries = zlib.decompress(raw[header_end:]).decode().splitlines()
    return {line.split(" ", 1)[0] for line in entries if re.match(r"\S+ py:", line)}


@pytest.mark.slow
def test_every_public_name_is_in_the_api_reference(inventory: set[str]) -> None:
    import flask_hooks.signals

    signals = {f"flask_hooks.signals.{name}" for name in flask_hooks.signals.by_name}
    missing = sorted((PUBLIC | signals) - inventory)
    assert not missing, f"not in the API reference: {missing}"


@pytest.mark.slow
def test_the_pages_links_to_the_packages_resolve(built: Path) -> None:
    warnings = (built / "warnings.txt").read_text(encoding="utf-8")
    broken = [
        f"{Path(m['page']).name}:{m['line']}: {m['target']}"
        for m in UNRESOLVED.finditer(warnings)
        if Path(m["page"]).parent == DOCS
    ]
    assert not broken, "links to nothing (shown as plain text):\n" + "\n".join(broken)


def test_every_option_of_the_hooks_commands_is_on_the_cli_page() -> None:
    from flask_hooks.cli import cli  # with every command registered on it

    page = (DOCS / "cli.rst").read_text(encoding="utf-8")
    assert set(cli.commands) >= {"routes", "send", "deliveries", "show", "replay", "forget", "purge"}
    missing = [
        f"{name} {option}"
        for name, command in cli.commands.items()
        for param in command.params
        for option in param.opts
        if option.startswith("--") and not re.search(rf"``[^`]*{re.escape(option)}\b", page)
    ]
    assert not missing, f"options docs/cli.rst does not describe: {missing}"


def test_every_setting_is_in_the_quickstarts_table() -> None:
    """The quickstart's table is where a user looks for a config key and its default."""
    from flask_hooks.settings import DEFAULTS

    page = (DOCS / "quickstart.rst").read_text(encoding="utf-8")
    table = page[page.index(".. list-table::", page.index("Configuration\n")) :]
    rows = set(re.findall(r"^    \* - ``(HOOKS_\w+)``", table, re.M))
    assert rows == {f"HOOKS_{option.upper()}" for option in DEFAULTS}


@pytest.mark.slow
def test_the_docstrings_links_resolve(built: Path) -> None:
    """A role in a docstring whose target is in no page renders as plain text (``hidden``,
    ``STATUSES``, ``LeaseLost`` read from the wrong module); ``-W`` does not see it."""
    warnings = (built / "warnings.txt").read_text(encoding="utf-8")
    broken = sorted({f"{m['object']}: {m['target']}" for m in UNRESOLVED_IN_DOCSTRING.finditer(warnings)})
    assert not broken, "docstrings linking to nothing (shown as plain text):\n" + "\n".join(broken)
