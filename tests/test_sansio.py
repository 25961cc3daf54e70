"""The core stays sans-I/O: nothing it imports, transitively, is Flask."""

from __future__ import annotations

import ast
from pathlib import Path

import flask_hooks

PACKAGE = Path(flask_hooks.__file__).parent
FORBIDDEN = ("flask", "werkzeug", "click", "blinker", "requests")


def module_path(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def test_core_never_imports_flask() -> None:
    todo = [f"flask_hooks.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py")]
    todo += [f"flask_hooks.core.providers.{p.stem}" for p in (PACKAGE / "core" / "providers").glob("*.py")]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_path(module)
        if path is None:
            continue
        for name in imports_of(path, module.removesuffix(".__init__")):
            root = name.split(".")[0]
            assert root not in FORBIDDEN, f"{module} imports {name}"
            assert name not in {"flask_hooks", "flask_hooks.extension", "flask_hooks.view"}, (module, name)
            if root == "flask_hooks":
                todo.append(name)
    assert "flask_hooks.core.pipeline" in seen
