"""MCP config discovery and parsing: sources, expansion, self-detection, hot reload, problems."""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from lmstudio_bridge import mcp_config
from lmstudio_bridge.errors import McpDisabled, McpError, McpNotFound, McpSelfReference
from lmstudio_bridge.mcp_config import McpCatalog, McpServerSpec, expand_vars, is_bridge_command

_mtimes = itertools.count(1_700_000_000_000_000_000, 1_000_000_000)


def write(path: Path, data: Any) -> Path:
    """Writes a config file and gives it a fresh mtime, so every write is a visible change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    stamp = next(_mtimes)
    os.utime(path, ns=(stamp, stamp))
    return path


def servers(**entries: dict[str, Any]) -> dict[str, Any]:
    return {"mcpServers": entries}


def stdio(command: str = "server", *args: str, **extra: Any) -> dict[str, Any]:
    return {"command": command, "args": list(args), **extra}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "proj" / "sub"
    path.mkdir(parents=True)
    strays = [p / ".mcp.json" for p in tmp_path.parents if (p / ".mcp.json").exists()]
    if strays:
        pytest.skip(f"a .mcp.json outside the test tree would leak in: {strays[0]}")
    return path


@pytest.fixture
def environ() -> dict[str, str]:
    return {}


@pytest.fixture
def catalog(home: Path, cwd: Path, environ: dict[str, str]) -> McpCatalog:
    return McpCatalog(home=home, cwd=cwd, environ=environ, platform="linux")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every config file read, in order."""
    seen: list[Path] = []
    real = mcp_config._read_text

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(mcp_config, "_read_text", counting)
    return seen


# --- sources and priority -------------------------------------------------------


def test_candidate_paths_in_priority_order(tmp_path: Path, home: Path, cwd: Path) -> None:
    environ = {
        "LMSTUDIO_BRIDGE_MCP_CONFIG": os.pathsep.join([str(tmp_path / "a.json"), str(tmp_path / "b.json")]),
        "MCP_JSON_PATH": str(tmp_path / "c.json"),
    }
    cat = McpCatalog(explicit_paths=[tmp_path / "d.json"], home=home, cwd=cwd, environ=environ, platform="linux")
    paths = cat.candidate_paths()
    assert paths[:4] == [
        (tmp_path / "a.json", "LMSTUDIO_BRIDGE_MCP_CONFIG"),
        (tmp_path / "b.json", "LMSTUDIO_BRIDGE_MCP_CONFIG"),
        (tmp_path / "c.json", "MCP_JSON_PATH"),
        (tmp_path / "d.json", "--mcp-config"),
    ]
    project = [p for p, kind in paths if kind == "project .mcp.json"]
    assert project[:4] == [
        cwd / ".mcp.json",
        cwd.parent / ".mcp.json",
        cwd.parent.parent / ".mcp.json",
        tmp_path / ".mcp.json",
    ]
    assert project[-1] == Path(cwd.anchor) / ".mcp.json"
    assert paths[-2:] == [
        (home / ".lmstudio" / "mcp.json", "LM Studio"),
        (home / ".config" / "Claude" / "claude_desktop_config.json", "Claude Desktop"),
    ]


def test_first_source_to_name_a_server_wins(tmp_path: Path, home: Path, cwd: Path) -> None:
    files = {
        "env": tmp_path / "env.json",
        "alias": tmp_path / "alias.json",
        "flag": tmp_path / "flag.json",
        "near": cwd / ".mcp.json",
        "far": tmp_path / "work" / ".mcp.json",
        "lmstudio": home / ".lmstudio" / "mcp.json",
        "desktop": home / ".config" / "Claude" / "claude_desktop_config.json",
    }
    order = list(files)
    for rank, (label, path) in enumerate(files.items()):
        # Each file names "s" plus every server name of the sources below it.
        write(path, servers(s=stdio(label), **{f"only-{x}": stdio(label) for x in order[rank:]}))
    environ = {"LMSTUDIO_BRIDGE_MCP_CONFIG": str(files["env"]), "MCP_JSON_PATH": str(files["alias"])}
    cat = McpCatalog(explicit_paths=[files["flag"]], home=home, cwd=cwd, environ=environ, platform="linux")
    merged = cat.servers()
    assert merged["s"].command == "env"
    assert merged["s"].source == str(files["env"])
    for label in order:
        assert merged[f"only-{label}"].command == order[0]
    # Remove sources from the top down: the next one takes over each time.
    for upper, lower in itertools.pairwise(order):
        files[upper].unlink()
        assert cat.get("s").command == lower
        assert cat.get(f"only-{lower}").command == lower
    assert cat.problems == [
        f"{files['env']}: file not found (named by LMSTUDIO_BRIDGE_MCP_CONFIG)",
        f"{files['alias']}: file not found (named by MCP_JSON_PATH)",
        f"{files['flag']}: file not found (named by --mcp-config)",
    ]


def test_each_source_kind_alone(tmp_path: Path, home: Path, cwd: Path) -> None:
    cases = [
        ({"LMSTUDIO_BRIDGE_MCP_CONFIG": str(tmp_path / "x.json")}, [], tmp_path / "x.json"),
        ({"MCP_JSON_PATH": str(tmp_path / "y.json")}, [], tmp_path / "y.json"),
        ({}, [tmp_path / "z.json"], tmp_path / "z.json"),
        ({}, [], cwd / ".mcp.json"),
        ({}, [], tmp_path / "work" / ".mcp.json"),
        ({}, [], home / ".lmstudio" / "mcp.json"),
        ({}, [], home / ".config" / "Claude" / "claude_desktop_config.json"),
    ]
    for environ, flags, path in cases:
        write(path, servers(only=stdio(path.name)))
        cat = McpCatalog(explicit_paths=flags, home=home, cwd=cwd, environ=environ, platform="linux")
        assert cat.available() == ["only"], path
        assert cat.get("only").source == str(path)
        assert cat.problems == []
        path.unlink()


def test_flag_paths_relative_to_cwd_and_tilde(home: Path, cwd: Path) -> None:
    write(cwd / "conf" / "m.json", servers(rel=stdio()))
    write(home / "m.json", servers(tilde=stdio()))
    environ = {"MCP_JSON_PATH": "~/m.json"}
    cat = McpCatalog(explicit_paths=["conf/m.json"], home=home, cwd=cwd, environ=environ, platform="linux")
    assert cat.available() == ["rel", "tilde"]


def test_a_path_named_twice_is_read_once_at_its_highest_rank(home: Path, cwd: Path, reads: list[Path]) -> None:
    project = write(cwd / ".mcp.json", servers(a=stdio()))
    environ = {"LMSTUDIO_BRIDGE_MCP_CONFIG": str(project)}
    cat = McpCatalog(explicit_paths=[project], home=home, cwd=cwd, environ=environ, platform="linux")
    kinds = [kind for path, kind in cat.candidate_paths() if path == project]
    assert kinds == ["LMSTUDIO_BRIDGE_MCP_CONFIG"]
    assert cat.available() == ["a"]
    assert reads == [project]


@pytest.mark.parametrize(
    ("platform", "environ", "relative"),
    [
        ("darwin", {}, "Library/Application Support/Claude/claude_desktop_config.json"),
        ("linux", {}, ".config/Claude/claude_desktop_config.json"),
        ("linux", {"XDG_CONFIG_HOME": "{tmp}/xdg"}, None),
        ("linux", {"XDG_CONFIG_HOME": "relative/ignored"}, ".config/Claude/claude_desktop_config.json"),
        ("win32", {"APPDATA": "{tmp}/Roaming"}, None),
        ("win32", {}, "AppData/Roaming/Claude/claude_desktop_config.json"),
    ],
)
def test_claude_desktop_path_per_os(
    tmp_path: Path, home: Path, cwd: Path, platform: str, environ: dict[str, str], relative: str | None
) -> None:
    environ = {k: v.replace("{tmp}", str(tmp_path)) for k, v in environ.items()}
    if relative is not None:
        expected = home / relative
    elif platform == "win32":
        expected = tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json"
    else:
        expected = tmp_path / "xdg" / "Claude" / "claude_desktop_config.json"
    cat = McpCatalog(home=home, cwd=cwd, environ=environ, platform=platform)
    assert cat.candidate_paths()[-1] == (expected, "Claude Desktop")
    write(expected, servers(desk=stdio()))
    assert cat.get("desk").source == str(expected)


def test_missing_discovered_files_are_silent(catalog: McpCatalog) -> None:
    assert catalog.servers() == {}
    assert catalog.problems == []
    with pytest.raises(McpNotFound, match=r"Available MCPs: \(none configured\)"):
        catalog.get("anything")


def test_missing_named_file_is_a_problem_logged_once(
    tmp_path: Path, home: Path, cwd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nope.json"
    cat = McpCatalog(explicit_paths=[missing], home=home, cwd=cwd, environ={}, platform="linux")
    with caplog.at_level(logging.WARNING, logger="lmstudio_bridge.mcp_config"):
        for _ in range(3):
            assert cat.problems == [f"{missing}: file not found (named by --mcp-config)"]
    assert [r.getMessage() for r in caplog.records] == [
        f"MCP config: {missing}: file not found (named by --mcp-config)"
    ]
    write(missing, servers(x=stdio()))
    assert cat.problems == []
    assert cat.available() == ["x"]


# --- entries --------------------------------------------------------------------


def test_stdio_entry_fields(cwd: Path, catalog: McpCatalog) -> None:
    write(
        cwd / ".mcp.json",
        servers(
            full={
                "type": "stdio",
                "command": "npx",
                "args": ["-y", "pkg", 8080, True],
                "env": {"B": "2", "A": "1", "N": 3},
                "cwd": "data",
                "disabled": False,
                "autoApprove": ["x"],
                "timeout": 60,
            },
            bare={"command": "srv"},
        ),
    )
    spec = catalog.get("full")
    assert spec.transport == "stdio"
    assert spec.command == "npx"
    assert spec.args == ("-y", "pkg", "8080", "true")
    assert spec.env == (("A", "1"), ("B", "2"), ("N", "3"))
    assert spec.env_dict == {"A": "1", "B": "2", "N": "3"}
    assert spec.cwd == str(cwd / "data")
    assert spec.source == str(cwd / ".mcp.json")
    assert not spec.is_bridge and not spec.disabled and spec.unsupported is None
    bare = catalog.get("bare")
    assert (bare.args, bare.env, bare.cwd, bare.url, bare.headers) == ((), (), None, None, ())


def test_cwd_absolute_and_tilde(home: Path, cwd: Path, catalog: McpCatalog) -> None:
    write(cwd / ".mcp.json", servers(a=stdio(cwd="/srv/x"), b=stdio(cwd="~/proj"), c=stdio(cwd="")))
    assert catalog.get("a").cwd == os.path.normpath("/srv/x")
    assert catalog.get("b").cwd == str(home / "proj")
    assert catalog.get("c").cwd is None


@pytest.mark.parametrize("kind", ["http", "streamable-http", "streamableHttp", "HTTP", None])
def test_http_entries(cwd: Path, catalog: McpCatalog, kind: str | None) -> None:
    entry: dict[str, Any] = {"url": "https://example.test/mcp", "headers": {"Authorization": "Bearer k"}}
    if kind is not None:
        entry["type"] = kind
    write(cwd / ".mcp.json", servers(remote=entry))
    spec = catalog.get("remote")
    assert spec.transport == "http"
    assert spec.url == "https://example.test/mcp"
    assert spec.headers_dict == {"Authorization": "Bearer k"}
    assert spec.command is None and not spec.is_bridge


def test_bad_http_url_is_an_invalid_entry(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(r={"type": "http", "url": "ftp://x"}, s={"type": "http"}))
    with pytest.raises(McpError, match=r"'r' .* invalid entry: \"url\" must start with http:// or https://"):
        catalog.get("r")
    assert catalog.problems == [
        f"{path}: server 'r': \"url\" must start with http:// or https://",
        f"{path}: server 's': \"url\" is missing",
    ]


@pytest.mark.parametrize("kind", ["sse", "websocket"])
def test_unsupported_types_are_listed_not_offered(cwd: Path, catalog: McpCatalog, kind: str) -> None:
    write(cwd / ".mcp.json", servers(old={"type": kind, "url": "https://x/sse"}, ok=stdio()))
    listed = catalog.servers()["old"]
    assert listed.transport == "unsupported"
    assert listed.unsupported is not None and f'type "{kind}" is not supported' in listed.unsupported
    assert listed.url == "https://x/sse"
    assert catalog.available() == ["ok"]
    assert catalog.problems == []
    with pytest.raises(McpError, match=f"MCP 'old' \\(in .*\\) cannot be used: type \"{kind}\" is not supported"):
        catalog.get("old")


def test_disabled_entry(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(off=stdio(disabled=True), on=stdio()))
    assert catalog.servers()["off"].disabled
    assert catalog.available() == ["on"]
    with pytest.raises(McpDisabled) as info:
        catalog.get("off")
    assert str(info.value) == (f"MCP 'off' is disabled in {path}. Remove \"disabled\": true from its entry to use it.")


def test_not_found_lists_only_usable_names_sorted(cwd: Path, catalog: McpCatalog) -> None:
    write(
        cwd / ".mcp.json",
        servers(
            zeta=stdio(),
            alpha={"url": "http://localhost:9/mcp"},
            off=stdio(disabled=True),
            me=stdio("uvx", "lmstudio-bridge"),
            old={"type": "sse", "url": "http://x"},
            broken={"args": ["no command"]},
        ),
    )
    with pytest.raises(McpNotFound) as info:
        catalog.get("missing")
    assert info.value.available == ["alpha", "zeta"]
    assert str(info.value) == "MCP 'missing' not found. Available MCPs: alpha, zeta"


def test_name_lookup_falls_back_to_a_unique_case_insensitive_match(cwd: Path, catalog: McpCatalog) -> None:
    write(cwd / ".mcp.json", servers(GitHub=stdio("gh"), Dup=stdio(), dup=stdio()))
    assert catalog.get("github").name == "GitHub"
    assert catalog.get("dup").name == "dup"
    with pytest.raises(McpNotFound):
        catalog.get("DUP")


# --- ${VAR} expansion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "expected", "missing"),
    [
        ("${A}", {"A": "1"}, "1", []),
        ("x-${A}-${B}-y", {"A": "1", "B": "2"}, "x-1-2-y", []),
        ("${A:-dflt}", {}, "dflt", []),
        ("${A:-dflt}", {"A": "set"}, "set", []),
        ("${A:-dflt}", {"A": ""}, "", []),  # set but empty: its value, not the default
        ("${A:-}", {}, "", []),
        ("${A:-a:-b}", {}, "a:-b", []),
        ("${A}", {}, "", ["A"]),
        ("${A}${A}${B}", {}, "", ["A", "B"]),
        ("$A and ${}", {"A": "1"}, "$A and ${}", []),
        ("${A}", {"A": "${B}"}, "${B}", []),  # no second pass
        ("${A:-${B}}", {"B": "2"}, "${B}", []),  # the default is "${B", up to the first "}"
    ],
)
def test_expand_vars(text: str, environ: dict[str, str], expected: str, missing: list[str]) -> None:
    assert expand_vars(text, environ) == (expected, missing)


def test_expansion_in_every_field(cwd: Path, environ: dict[str, str], catalog: McpCatalog) -> None:
    environ.update({"BIN": "node", "TOKEN": "sekret", "HOST": "example.test", "DIR": "/opt/d"})
    write(
        cwd / ".mcp.json",
        servers(
            local={
                "command": "${BIN}",
                "args": ["${DIR}/index.js", "--port=${PORT:-3000}"],
                "env": {"API_KEY": "${TOKEN}", "${KEY_NAME}": "literal-key"},
                "cwd": "${DIR}",
            },
            remote={
                "type": "http",
                "url": "https://${HOST}/mcp",
                "headers": {"Authorization": "Bearer ${TOKEN}"},
            },
        ),
    )
    local = catalog.get("local")
    assert local.command == "node"
    assert local.args == ("/opt/d/index.js", "--port=3000")
    assert local.env_dict == {"API_KEY": "sekret", "${KEY_NAME}": "literal-key"}  # names stay as written
    assert local.cwd == os.path.normpath("/opt/d")
    remote = catalog.get("remote")
    assert remote.url == "https://example.test/mcp"
    assert remote.headers_dict == {"Authorization": "Bearer sekret"}
    assert catalog.problems == []


def test_unset_variable_becomes_empty_with_a_problem_naming_it(
    cwd: Path, catalog: McpCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(cwd / ".mcp.json", servers(gh=stdio("srv", "--token=${GH_TOKEN}", env={"T": "${GH_TOKEN}"})))
    with caplog.at_level(logging.WARNING, logger="lmstudio_bridge.mcp_config"):
        spec = catalog.get("gh")
        catalog.get("gh")
    assert spec.args == ("--token=",)
    assert spec.env_dict == {"T": ""}
    line = f"{path}: server 'gh': ${{GH_TOKEN}} is not set and has no default; it expands to an empty string"
    assert catalog.problems == [line]
    assert [r.getMessage() for r in caplog.records] == [f"MCP config: {line}"]


def test_command_expanding_to_nothing_is_invalid(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(x={"command": "${NOPE}"}))
    with pytest.raises(McpError, match='invalid entry: "command" is empty'):
        catalog.get("x")
    assert f"{path}: server 'x': \"command\" is empty: ${{NOPE}} is not set" in catalog.problems


# --- the bridge never runs itself ---------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("uvx", ["lmstudio-bridge"]),
        ("uvx", ["lmstudio-bridge@latest"]),
        ("uvx", ["lmstudio-bridge==0.1.0", "--log-level", "DEBUG"]),
        ("uvx", ["--from", "git+https://github.com/someone/lmstudio-bridge", "lmstudio-bridge"]),
        ("uvx", ["--from", "git+https://github.com/someone/lmstudio-bridge.git@main", "serve"]),
        ("uvx", ["--from=git+ssh://git@github.com/someone/lmstudio-bridge.git", "serve"]),
        ("python", ["-m", "lmstudio_bridge"]),
        ("python3", ["-m", "lmstudio_bridge.__main__"]),
        ("/usr/bin/python3", ["-mlmstudio_bridge"]),
        ("uv", ["run", "--directory", "/x", "lmstudio-bridge"]),
        ("uv", ["run", "--directory", "/src/lmstudio-bridge", "python", "-m", "lmstudio_bridge"]),
        ("/home/u/.local/bin/lmstudio-bridge", []),
        ("lmstudio-bridge", ["--port", "1234"]),
        ("C:\\Users\\u\\.venv\\Scripts\\lmstudio-bridge.exe", []),
        ("uv", ["run", "/opt/venv/bin/lmstudio-bridge"]),
        ("python", ["/src/lmstudio_bridge/__main__.py"]),
        ("pipx", ["run", "lmstudio_bridge"]),
        ("sh", ["-c", "exec uvx 'lmstudio-bridge' --x"]),
        ("cmd", ["/c", "uvx", "lmstudio-bridge"]),
        ("uvx lmstudio-bridge", []),
    ],
)
def test_self_detection(command: str, args: list[str]) -> None:
    assert is_bridge_command(command, args)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("npx", ["-y", "@modelcontextprotocol/server-filesystem", "/home/u/code/lmstudio-bridge"]),
        ("uvx", ["mcp-server-time"]),
        ("uvx", ["lmstudio-bridge-helper"]),
        ("python", ["-m", "lmstudio_bridge_extras"]),
        ("uv", ["run", "--directory", "/src/lmstudio-bridge", "other-server"]),
        ("node", ["/home/u/lmstudio-bridge/tools/server.js"]),
        ("/opt/lmstudio-bridge/bin/other", []),
    ],
)
def test_not_self(command: str, args: list[str]) -> None:
    assert not is_bridge_command(command, args)


def test_self_entries_are_refused_and_not_offered(cwd: Path, catalog: McpCatalog) -> None:
    path = write(
        cwd / ".mcp.json", servers(bridge=stdio("uvx", "lmstudio-bridge"), time=stdio("uvx", "mcp-server-time"))
    )
    assert catalog.servers()["bridge"].is_bridge
    assert catalog.available() == ["time"]
    with pytest.raises(McpSelfReference) as info:
        catalog.get("bridge")
    assert f"(in {path})" in str(info.value)


def test_self_detection_sees_expanded_values(cwd: Path, environ: dict[str, str], catalog: McpCatalog) -> None:
    environ["PKG"] = "lmstudio-bridge"
    write(cwd / ".mcp.json", servers(sneaky=stdio("uvx", "${PKG}")))
    with pytest.raises(McpSelfReference):
        catalog.get("sneaky")


def test_disabled_self_entry_reports_self_reference(cwd: Path, catalog: McpCatalog) -> None:
    write(cwd / ".mcp.json", servers(b=stdio("lmstudio-bridge", disabled=True)))
    with pytest.raises(McpSelfReference):
        catalog.get("b")


# --- hot reload ---------------------------------------------------------------------


def test_edit_takes_effect_on_next_lookup(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(s=stdio("one")))
    assert catalog.get("s").command == "one"
    write(path, servers(s=stdio("two"), t=stdio()))
    assert catalog.get("s").command == "two"
    assert catalog.available() == ["s", "t"]


def test_unchanged_files_are_not_read_again(home: Path, cwd: Path, catalog: McpCatalog, reads: list[Path]) -> None:
    project = write(cwd / ".mcp.json", servers(a=stdio()))
    lmstudio = write(home / ".lmstudio" / "mcp.json", servers(b=stdio()))
    for _ in range(5):
        assert catalog.available() == ["a", "b"]
        catalog.get("a")
        catalog.problems  # noqa: B018
    assert sorted(reads) == sorted([project, lmstudio])
    write(lmstudio, servers(b=stdio(), c=stdio()))
    assert catalog.available() == ["a", "b", "c"]
    assert reads[2:] == [lmstudio]


def test_same_size_edit_is_seen(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(s=stdio("aaa")))
    assert catalog.get("s").command == "aaa"
    write(path, servers(s=stdio("bbb")))
    assert catalog.get("s").command == "bbb"


def test_replaced_file_with_same_mtime_and_size_is_seen_by_inode(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(s=stdio("aaa")))
    assert catalog.get("s").command == "aaa"
    before = os.stat(path)
    fresh = write(cwd / "new.json", servers(s=stdio("bbb")))
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(fresh, path)
    assert catalog.get("s").command == "bbb"


def test_files_appearing_and_disappearing(tmp_path: Path, home: Path, cwd: Path, catalog: McpCatalog) -> None:
    assert catalog.available() == []
    parent = write(tmp_path / "work" / ".mcp.json", servers(s=stdio("parent")))
    assert catalog.get("s").command == "parent"
    near = write(cwd / ".mcp.json", servers(s=stdio("near")))
    assert catalog.get("s").command == "near"
    near.unlink()
    assert catalog.get("s").command == "parent"
    parent.unlink()
    with pytest.raises(McpNotFound):
        catalog.get("s")
    write(home / ".lmstudio" / "mcp.json", servers(s=stdio("lms")))
    assert catalog.get("s").command == "lms"


def test_env_variable_paths_are_read_on_each_lookup(
    tmp_path: Path, environ: dict[str, str], catalog: McpCatalog
) -> None:
    write(tmp_path / "late.json", servers(late=stdio()))
    assert catalog.available() == []
    environ["LMSTUDIO_BRIDGE_MCP_CONFIG"] = str(tmp_path / "late.json")
    assert catalog.available() == ["late"]


# --- broken files -------------------------------------------------------------------


def test_broken_json_is_skipped_recorded_and_logged_once(
    home: Path, cwd: Path, catalog: McpCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    broken = write(cwd / ".mcp.json", '{\n  "mcpServers": {\n    "a": {"command": "x",}\n  }\n}\n')
    write(home / ".lmstudio" / "mcp.json", servers(b=stdio()))
    expected = f"{broken}: invalid JSON at line 3 column 26: Expecting property name enclosed in double quotes"
    with caplog.at_level(logging.WARNING, logger="lmstudio_bridge.mcp_config"):
        for _ in range(3):
            assert catalog.available() == ["b"]
            assert catalog.problems == [expected]
    assert [r.getMessage() for r in caplog.records] == [f"MCP config: {expected}"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)

    caplog.clear()
    write(broken, servers(a=stdio()))
    assert catalog.available() == ["a", "b"]
    assert catalog.problems == []
    with caplog.at_level(logging.WARNING, logger="lmstudio_bridge.mcp_config"):
        write(broken, "{")
        catalog.available()
        catalog.available()
    assert len(caplog.records) == 1  # a new broken version is logged again, once


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", 'expected a JSON object with "mcpServers" at the top level'),
        ('{"mcpServers": []}', '"mcpServers" must be a JSON object of name -> server'),
        ("", "invalid JSON at line 1 column 1: Expecting value"),
    ],
)
def test_wrong_shape_is_a_problem(cwd: Path, catalog: McpCatalog, content: str, problem: str) -> None:
    path = write(cwd / ".mcp.json", content)
    assert catalog.servers() == {}
    assert catalog.problems == [f"{path}: {problem}"]


def test_not_utf8_is_a_problem(cwd: Path, catalog: McpCatalog) -> None:
    path = cwd / ".mcp.json"
    path.write_bytes(b'{"mcpServers": {"\xff": {}}}')
    assert catalog.problems == [f"{path}: not UTF-8 text (byte 17)"]


def test_utf8_bom_is_accepted(cwd: Path, catalog: McpCatalog) -> None:
    path = cwd / ".mcp.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(servers(a=stdio())).encode())
    assert catalog.available() == ["a"]


def test_file_without_mcp_servers(tmp_path: Path, home: Path, cwd: Path) -> None:
    write(home / ".config" / "Claude" / "claude_desktop_config.json", {"preferences": {"x": 1}})
    named = write(tmp_path / "named.json", {"other": 1})
    cat = McpCatalog(explicit_paths=[named], home=home, cwd=cwd, environ={}, platform="linux")
    assert cat.servers() == {}
    assert cat.problems == [f'{named}: has no "mcpServers" object']


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("just text", "the entry is not a JSON object"),
        ({"args": []}, '"command" is missing'),
        ({"command": ["npx"]}, '"command" must be a string'),
        ({"command": "x", "args": "--flag"}, '"args" must be a list of strings'),
        ({"command": "x", "args": [{"a": 1}]}, '"args" must be a list of strings'),
        ({"command": "x", "env": ["A=1"]}, '"env" must be an object of strings'),
        ({"command": "x", "env": {"A": None}}, '"env.A" must be a string'),
        ({"command": "x", "disabled": "yes"}, '"disabled" must be true or false'),
        ({"command": "x", "type": 3}, '"type" must be a string'),
        ({"command": "x", "cwd": 5}, '"cwd" must be a string'),
    ],
)
def test_invalid_entry_is_listed_with_its_reason(cwd: Path, catalog: McpCatalog, entry: Any, reason: str) -> None:
    path = write(cwd / ".mcp.json", servers(bad=entry, good=stdio()))
    assert catalog.available() == ["good"]
    assert catalog.servers()["bad"].unsupported == f"invalid entry: {reason}"
    assert catalog.problems == [f"{path}: server 'bad': {reason}"]
    with pytest.raises(McpError, match="cannot be used: invalid entry"):
        catalog.get("bad")


def test_invalid_entry_still_shadows_lower_sources(home: Path, cwd: Path, catalog: McpCatalog) -> None:
    write(cwd / ".mcp.json", servers(s={"args": []}))
    write(home / ".lmstudio" / "mcp.json", servers(s=stdio()))
    with pytest.raises(McpError, match='"command" is missing'):
        catalog.get("s")


def test_directory_in_place_of_project_file_is_skipped(cwd: Path, catalog: McpCatalog) -> None:
    (cwd / ".mcp.json").mkdir()
    assert catalog.servers() == {}
    assert catalog.problems == []


def test_unreadable_named_file_is_retried(
    tmp_path: Path, home: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "m.json", servers(a=stdio()))
    cat = McpCatalog(explicit_paths=[path], home=home, cwd=cwd, environ={}, platform="linux")
    real = mcp_config._read_text

    def denied(p: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mcp_config, "_read_text", denied)
    assert cat.problems == [f"{path}: cannot read it (Permission denied)"]
    monkeypatch.setattr(mcp_config, "_read_text", real)
    assert cat.available() == ["a"]  # same stat, but a failed read was not cached


# --- the spec -------------------------------------------------------------------------


def test_secrets_are_masked_in_repr_and_str(
    cwd: Path, environ: dict[str, str], catalog: McpCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    environ["KEY"] = "sk-very-secret"
    write(
        cwd / ".mcp.json",
        servers(
            local=stdio("srv", env={"API_KEY": "${KEY}", "OTHER": "hunter2"}),
            remote={"url": "https://x/mcp", "headers": {"Authorization": "Bearer ${KEY}"}},
            oops=stdio("srv", env={"API_KEY": "${KEY}", "BAD": ["hunter2"]}),
        ),
    )
    with caplog.at_level(logging.DEBUG, logger="lmstudio_bridge.mcp_config"):
        specs = catalog.servers()
        problems = catalog.problems
    for spec in specs.values():
        for text in (repr(spec), str(spec), f"{spec}", repr([spec])):
            assert "sk-very-secret" not in text and "hunter2" not in text
    assert "API_KEY" in repr(specs["local"]) and "***" in repr(specs["local"])
    assert "Authorization" in str(specs["remote"])
    assert specs["local"].env_dict["API_KEY"] == "sk-very-secret"
    assert not any("sk-very-secret" in line or "hunter2" in line for line in problems)
    assert "sk-very-secret" not in caplog.text and "hunter2" not in caplog.text


def test_spec_is_frozen_and_hashable() -> None:
    spec = McpServerSpec(name="a", transport="stdio", command="x", source="f")
    with pytest.raises(ValueError):
        spec.command = "y"  # type: ignore[misc]
    assert hash(spec) == hash(McpServerSpec(name="a", transport="stdio", command="x", source="f"))
    assert {spec: 1}[McpServerSpec(name="a", transport="stdio", command="x", source="f")] == 1


def test_launch_key(cwd: Path, catalog: McpCatalog) -> None:
    base = McpServerSpec(name="a", transport="stdio", command="x", args=("1",), env=(("K", "v"),), source="f")
    same_child = base.model_copy(update={"name": "b", "source": "g", "disabled": True})
    assert base.launch_key() == same_child.launch_key()
    for change in ({"command": "y"}, {"args": ("2",)}, {"env": (("K", "w"),)}, {"cwd": "/t"}):
        assert base.model_copy(update=change).launch_key() != base.launch_key()
    http = McpServerSpec(name="h", transport="http", url="http://x", headers=(("A", "1"),), source="f")
    assert http.launch_key() != http.model_copy(update={"headers": (("A", "2"),)}).launch_key()

    path = write(cwd / ".mcp.json", servers(s=stdio("x", env={"K": "v"})))
    first = catalog.get("s")
    assert catalog.get("s") is first  # unchanged file: the very same spec
    write(path, servers(s=stdio("x", env={"K": "w"})))
    assert catalog.get("s").launch_key() != first.launch_key()


def test_unset_variables_of_a_disabled_entry_are_not_reported(cwd: Path, catalog: McpCatalog) -> None:
    write(cwd / ".mcp.json", servers(off=stdio("srv", env={"T": "${UNSET}"}, disabled=True)))
    assert catalog.servers()["off"].disabled
    assert catalog.problems == []


def test_empty_server_name_is_skipped(cwd: Path, catalog: McpCatalog) -> None:
    path = write(cwd / ".mcp.json", servers(**{" ": stdio(), "ok": stdio()}))
    assert list(catalog.servers()) == ["ok"]
    assert catalog.problems == [f"{path}: a server has an empty name; skipped"]
