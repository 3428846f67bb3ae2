"""The documentation agrees with the repository: its links resolve, the make targets it names
exist, and the configuration reference lists exactly the environment variables the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from civic_warehouse import settings

ROOT = settings.PROJECT_ROOT
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGURATION = ROOT / "docs" / "configuration.md"
# The operating system's own, which the code passes on to the processes it starts.
OS_VARIABLES = {"PATH"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?:^|[\s`(])make ([a-z][a-z0-9-]*)", re.M)
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*(?:<[A-Z]+>[A-Z0-9_]*)?$")
# Where the code reads a variable: os.environ / getenv by literal name, a module constant naming
# one (``..._ENV = "CW_..."``), or any string literal in the project's own CW_ namespace.
READS = (
    re.compile(r"environ(?:\.get)?\(?\[?\s*[\"']([A-Z][A-Z0-9_]+)[\"']"),
    re.compile(r"getenv\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']"),
    re.compile(r"[\"'](CW_[A-Z0-9_]+)[\"']"),
)
CODE_FILES = [
    path
    for folder in ("plugins", "simulator", "dags", "bi", "dbt_project", "expectations", "tests")
    for path in (ROOT / folder).rglob("*")
    if path.suffix in (".py", ".yml", ".yaml", ".sql", ".json") and ".venv" not in path.parts
] + [ROOT / "Makefile", ROOT / "docker-compose.yml", ROOT / "Dockerfile"]


def code_text() -> str:
    return "\n".join(path.read_text(errors="replace") for path in CODE_FILES if path.is_file())


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#")
    ]


def documented_variables() -> set[str]:
    names = set()
    for line in CONFIGURATION.read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= {n for n in INLINE_CODE.findall(first_cell) if VARIABLE.match(n)}
    return names


def variables_read_by_the_product() -> set[str]:
    names = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        text = path.read_text()
        for pattern in READS:
            names |= set(pattern.findall(text))
    return names - OS_VARIABLES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if path.exists():
            continue
        broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_pages_link_each_other():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_every_make_target_the_docs_name_exists():
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    for page in PAGES:
        text = page.read_text()
        snippets = FENCE.findall(text) + INLINE_CODE.findall(text)
        missing = {target for code in snippets for target in MAKE.findall(code)} - targets
        assert not missing, (
            f"{page.relative_to(ROOT)} names make targets that do not exist: {missing}"
        )


def test_every_documented_variable_is_read_by_the_code():
    code = code_text()
    documented = documented_variables()
    assert len(documented) > 40, "the configuration reference's table was not found"
    unread = sorted(
        name for name in documented if not re.search(rf"\b{re.escape(name.split('<')[0])}", code)
    )
    assert not unread, f"docs/configuration.md lists variables nothing reads: {unread}"


def test_every_variable_the_product_reads_is_documented():
    undocumented = sorted(variables_read_by_the_product() - documented_variables())
    assert not undocumented, f"missing from docs/configuration.md: {undocumented}"
