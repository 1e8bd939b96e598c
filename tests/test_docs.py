"""The documentation cannot drift from the code: settings, errors, tools, commands and links are checked here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from mcp import Client

from lmstudio_bridge import errors
from lmstudio_bridge.cli import build_parser
from lmstudio_bridge.config import SETTINGS, Settings, settings_table
from lmstudio_bridge.server import build_server
from tests.support.common import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
WRITTEN_ELSEWHERE = {DOCS / "performance.md"}
"""Linked from these pages but written separately; a link to it is allowed before it exists."""

TABLE = re.compile(r"<!-- settings-table:[^\n]*-->\n(?P<table>.*?)\n<!-- settings-table: end -->", re.DOTALL)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    lines = read(README).splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev,local]' && .venv/bin/lmstudio-bridge demo",
        ".venv/bin/python -m pytest",
    ]
    assert lines.index("```bash") < 6  # right after the title and the two sentences


def test_ci_runs_the_readme_test_command() -> None:
    assert ".venv/bin/python -m pytest" in read(ROOT / ".ci" / "run")


def test_configuration_has_exactly_the_generated_settings_table() -> None:
    match = TABLE.search(read(DOCS / "configuration.md"))
    assert match, "docs/configuration.md lost its settings-table markers"
    assert match.group("table").strip() == settings_table(), (
        "docs/configuration.md is out of date; paste the output of "
        "`python -c 'from lmstudio_bridge.config import settings_table; print(settings_table())'`"
    )


def test_every_setting_and_flag_is_documented() -> None:
    text = read(DOCS / "configuration.md")
    for setting in SETTINGS:
        for var in setting.env:
            assert f"`{var}`" in text
        if setting.flag:
            assert setting.flag in text
    documented = {s.field for s in SETTINGS}
    assert set(Settings.model_fields) <= documented | {"base_url"}


def error_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.BridgeError) and cls is not errors.BridgeError and cls.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_in_troubleshooting(cls: type[BaseException]) -> None:
    assert cls.__name__ in read(DOCS / "troubleshooting.md")


@pytest.mark.parametrize(
    "message",
    [
        str(errors.ModelNotFound("nonexistent-model", ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"])),
        str(errors.NoModelsLoaded("URL")),
        str(errors.LMStudioUnreachable("URL")),
        str(errors.McpDisabled("NAME", "FILE")),
        str(errors.McpSelfReference("NAME", "FILE")),
        "MCP 'NAME' not found. Available MCPs: ",
        "MCP 'NAME' failed to start: ",
    ],
)
def test_troubleshooting_quotes_the_messages_as_the_bridge_writes_them(message: str) -> None:
    assert message in read(DOCS / "troubleshooting.md")


def test_guide_keeps_the_error_texts() -> None:
    guide = read(DOCS / "multi-model-guide.md")
    assert (
        "Error: "
        + str(errors.ModelNotFound("nonexistent-model", ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"]))
        in guide
    )
    assert (
        "Error: "
        + str(
            errors.ModelNotFound("qwen/qwen3-coder", ["mistralai/magistral-small-2509", "deepseek/deepseek-coder-33b"])
        )
        in guide
    )


def test_guide_links_every_example() -> None:
    guide = read(DOCS / "multi-model-guide.md")
    for script in (ROOT / "examples").glob("*.py"):
        if script.name != "bridge_helpers.py":
            assert f"../examples/{script.name}" in guide


async def test_every_tool_and_parameter_is_documented() -> None:
    text = read(DOCS / "tools.md")
    async with Client(build_server(Settings())) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) == 12
    for tool in tools:
        assert f"## {tool.name}" in text
        for parameter in tool.input_schema.get("properties", {}):
            assert f"`{parameter}`" in text, f"{tool.name}.{parameter} is not documented"


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    text = read(README) + read(DOCS / "quickstart.md")
    for command in commands:
        if command != "serve":
            assert f"lmstudio-bridge {command}" in text or f"`{command}`" in text, command


def slug(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", read(path), flags=re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_and_headings_that_exist(page: Path) -> None:
    text = re.sub(r"```.*?```", "", read(page), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if path in WRITTEN_ELSEWHERE and not path.exists():
            continue
        assert path.exists(), f"{page.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: no heading for #{anchor} in {path.name}"


def test_docs_link_to_performance() -> None:
    assert "performance.md" in read(README)
    assert "performance.md" in read(DOCS / "configuration.md")
