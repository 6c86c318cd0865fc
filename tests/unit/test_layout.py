"""The layout rules, checked from the files: tests mirror the code, imports point one way.

Every module with logic under the packages has ``tests/unit/<package>/test_<module>.py``
(a package's ``__init__.py`` mirrors to ``test_init.py``, a private ``_jobs.py`` to
``test_jobs.py``); every test file there is named
after a module of its package (``test_<module>.py`` or ``test_<module>_<topic>.py``).
The allow-lists below are the exceptions, each with its reason; an entry that no longer
applies fails the test, so they only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
PACKAGES = ("core", "market", "market/cache", "market/feeds", "market/research", "rag",
            "rag/answers", "serve", "serve/security", "serve/observability", "actors",
            "pipelines")
PROJECT = ("core", "market", "rag", "actors", "pipelines", "serve", "bench", "tests")

# Exercised only by integration tests: a Ray class, a Serve deployment or route over one,
# or a part that needs a server the unit tests do not start.
INTEGRATION_ONLY = {
    "actors/feed.py": "Ray shell around market.feeds.runner.FeedRunner; "
                      "tests/integration/test_shard_restart.py",
    "actors/shard.py": "Ray shell around market.shard.Shard; "
                       "tests/integration/test_shard_long_poll.py, test_shard_restart.py",
    "actors/market.py": "starts and finds the actors in a Ray cluster; "
                        "tests/integration/test_multinode.py, test_shard_restart.py",
    "market/cache/redis_cache.py": "needs a Redis server; tests/integration/test_redis_cache.py",
    "serve/knowledge.py": "Serve deployment over rag.index; "
                          "tests/integration/test_knowledge_deployment.py",
    "serve/routes_documents.py": "routes over the knowledge deployment; "
                                 "tests/integration/test_knowledge_deployment.py",
    "serve/models.py": "Serve deployments of the generator and embedder; "
                       "tests/integration/test_assistant_routes.py, test_assistant_answers.py",
    "serve/assistant.py": "joins the market, knowledge and model deployments; "
                          "tests/integration/test_assistant_answers.py",
    "serve/routes_assistant.py": "routes over serve.assistant; "
                                 "tests/integration/test_assistant_routes.py",
    "serve/local_service.py": "starts a real `marketray serve`; it is the integration "
                              "tests' harness (tests/integration/harness.py)",
    "pipelines/ingest.py": "Ray Data job; tests/integration/test_ingest_pipeline.py",
    "pipelines/backfill_alpaca.py": "backfill against the fake Alpaca server; "
                                    "tests/integration/test_alpaca_history.py",
}

# Modules with logic whose own unit test is still to be written; today other unit tests
# exercise them (named beside each). Writing the test removes the entry.
NOT_YET_MIRRORED: dict[str, str] = {
}



def _has_logic(path: Path) -> bool:
    """Return True when a function or method does more than pass, ``...`` or return None."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = [s for s in node.body
                    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            trivial = all(isinstance(s, ast.Pass) or (isinstance(s, ast.Return) and (
                s.value is None or (isinstance(s.value, ast.Constant) and s.value.value is None)))
                for s in body)
            if not trivial:
                return True
    return False


def _modules() -> list[str]:
    return sorted(str(path.relative_to(ROOT)) for package in PACKAGES
                  for path in (ROOT / package).glob("*.py") if _has_logic(path))


def _stem(path: Path) -> str:
    """``__init__`` → ``init``; a private ``_jobs`` → ``jobs``."""
    return "init" if path.stem == "__init__" else path.stem.lstrip("_")


def _mirror(module: str) -> str:
    """``market/feeds/router.py`` → ``market/feeds/test_router.py`` (under tests/unit)."""
    path = Path(module)
    return str(path.parent / f"test_{_stem(path)}.py")


def test_every_module_with_logic_has_its_mirrored_unit_test() -> None:
    excused = {**INTEGRATION_ONLY, **NOT_YET_MIRRORED}

    missing = [module for module in _modules() if module not in excused
               and not (UNIT / _mirror(module)).exists()]

    assert not missing, f"add tests/unit/<package>/test_<module>.py for: {missing}"


@pytest.mark.parametrize("listed", [INTEGRATION_ONLY, NOT_YET_MIRRORED],
                         ids=["integration_only", "not_yet_mirrored"])
def test_allow_lists_name_only_modules_that_still_lack_their_test(listed: dict[str, str]
                                                                  ) -> None:
    modules = set(_modules())

    stale = [m for m in listed if m not in modules or (UNIT / _mirror(m)).exists()]

    assert not stale, f"remove from the allow-list (gone, no logic, or now tested): {stale}"


def test_every_unit_test_file_is_named_after_a_module_of_its_package() -> None:
    strays = []
    for test in sorted(UNIT.rglob("test_*.py")):
        relative = test.relative_to(UNIT)
        if relative.parent == Path(".") or relative.parts[0] == "deploy":
            continue  # this file; deploy/ checks manifests, not a package
        package = ROOT / relative.parent
        stems = {_stem(p) for p in package.glob("*.py")}
        name = test.stem.removeprefix("test_")
        if not any(
                name == stem or name.startswith(stem + "_") for stem in stems):
            strays.append(str(relative))

    assert not strays, f"name these test_<module>[_<topic>].py after their module: {strays}"


def _imports(package: str) -> dict[str, set[str]]:
    """Return, per file under ``package``, the top-level packages it imports (anywhere)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_core_imports_no_other_project_package() -> None:
    bad = {path: names & set(PROJECT) - {"core"} for path, names in _imports("core").items()
           if names & set(PROJECT) - {"core"}}
    assert not bad


@pytest.mark.parametrize("package", ["market", "rag"])
def test_domain_packages_import_no_ray_and_no_upper_layer(package: str) -> None:
    upper = {"ray", "serve", "actors", "pipelines", "bench", "tests"}

    bad = {path: names & upper for path, names in _imports(package).items() if names & upper}

    assert not bad, f"{package}/ must not import {sorted(upper)}: {bad}"


def test_the_rules_see_the_code() -> None:
    # the globs above would pass on an empty tree: check they found what is known there
    modules = _modules()
    assert "market/greeks.py" in modules
    assert "serve/security/signing.py" in modules
    assert "market/cache/base.py" not in modules  # a Protocol: no logic
    assert "ray" in _imports("actors")["actors/shard.py"]
