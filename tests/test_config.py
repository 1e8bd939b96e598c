"""Settings from environment and flags, and the command line's handling of bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmstudio_bridge.cli import build_parser
from lmstudio_bridge.config import SETTINGS, flag_values, load_settings
from lmstudio_bridge.errors import ConfigError
from tests.support.bridge import run_cli


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.base_url == "http://localhost:1234"
    assert s.api_key is None and s.default_model is None
    assert s.model_cache_ttl == 60
    assert s.list_timeout < 10 < s.request_timeout


def test_host_and_port() -> None:
    assert load_settings(environ={"LMSTUDIO_HOST": "10.0.0.5", "LMSTUDIO_PORT": "4321"}).base_url == "http://10.0.0.5:4321"
    assert load_settings(environ={"LMSTUDIO_PORT": "4321"}).base_url == "http://localhost:4321"


def test_base_url_overrides_host_and_port_and_drops_v1() -> None:
    env = {"LMSTUDIO_HOST": "ignored", "LMSTUDIO_BASE_URL": "http://127.0.0.1:8080/v1/"}
    assert load_settings(environ=env).base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("var", ["LMSTUDIO_API_KEY", "LM_API_TOKEN"])
def test_api_key_from_either_variable_and_never_shown(var: str) -> None:
    s = load_settings(environ={var: "sk-secret"})
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(s) and "sk-secret" not in str(s)


def test_flags_override_environment() -> None:
    args = build_parser().parse_args(["--base-url", "http://127.0.0.1:9", "--model", "m", "--max-rounds", "7"])
    s = load_settings(environ={"LMSTUDIO_BASE_URL": "http://other:1", "LMSTUDIO_BRIDGE_MAX_ROUNDS": "3"}, flags=flag_values(args))
    assert (s.base_url, s.default_model, s.max_rounds) == ("http://127.0.0.1:9", "m", 7)


def test_subcommand_flags_are_read_too() -> None:
    args = build_parser().parse_args(["run", "--mcp", "time", "--model", "m", "task"])
    assert load_settings(environ={}, flags=flag_values(args)).default_model == "m"


def test_mcp_config_paths_add_up_in_order(tmp_path: Path) -> None:
    env = {"LMSTUDIO_BRIDGE_MCP_CONFIG": os.pathsep.join(["/a.json", "/b.json"]), "MCP_JSON_PATH": "/c.json"}
    args = build_parser().parse_args(["--mcp-config", "/d.json", "--mcp-config", "/e.json"])
    s = load_settings(environ=env, flags=flag_values(args))
    assert [p.name for p in s.mcp_config] == ["a.json", "b.json", "c.json", "d.json", "e.json"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LMSTUDIO_PORT": "abc"}, "LMSTUDIO_PORT='abc'"),
        ({"LMSTUDIO_PORT": "70000"}, "LMSTUDIO_PORT='70000'"),
        ({"LMSTUDIO_BASE_URL": "localhost:1234"}, "LMSTUDIO_BASE_URL='localhost:1234': must look like http://HOST:PORT"),
        ({"LMSTUDIO_BRIDGE_MODEL_CACHE_TTL": "-1"}, "LMSTUDIO_BRIDGE_MODEL_CACHE_TTL='-1'"),
        ({"LMSTUDIO_BRIDGE_MAX_ROUNDS": "many"}, "LMSTUDIO_BRIDGE_MAX_ROUNDS='many'"),
        ({"LMSTUDIO_BRIDGE_LOG_LEVEL": "loud"}, "LMSTUDIO_BRIDGE_LOG_LEVEL"),
        ({"LMSTUDIO_BRIDGE_MAX_TOKENS": "0"}, "LMSTUDIO_BRIDGE_MAX_TOKENS='0'"),
        ({"LMSTUDIO_BRIDGE_TEMPERATURE": "hot"}, "LMSTUDIO_BRIDGE_TEMPERATURE='hot'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_sampling_holds_what_was_set_and_the_bridge_default_temperature() -> None:
    assert load_settings(environ={}).sampling == {"temperature": 0.0}
    assert load_settings(environ={"LMSTUDIO_BRIDGE_SAMPLING": "server"}).sampling == {}
    assert load_settings(environ={"LMSTUDIO_BRIDGE_SAMPLING": "Server", "LMSTUDIO_BRIDGE_TEMPERATURE": "0.7"}).sampling == {
        "temperature": 0.7
    }
    settings = load_settings(environ={"LMSTUDIO_BRIDGE_MAX_TOKENS": "256", "LMSTUDIO_BRIDGE_TEMPERATURE": "0"})
    assert settings.sampling == {"max_tokens": 256, "temperature": 0.0}
    flags = flag_values(build_parser().parse_args(["--temperature", "0.2"]))
    assert load_settings(environ={}, flags=flags).sampling == {"temperature": 0.2}


def test_every_setting_field_exists() -> None:
    from lmstudio_bridge.config import Settings

    fields = set(Settings.model_fields) | {"host", "port"}
    assert {s.field for s in SETTINGS} <= fields
    assert set(Settings.model_fields) <= {s.field for s in SETTINGS}


def test_bad_value_exits_2_with_one_line_and_no_traceback() -> None:
    done = run_cli("models", env={"LMSTUDIO_PORT": "not-a-port"})
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "LMSTUDIO_PORT" in lines[0]
    assert "Traceback" not in done.stderr


def test_version_and_help() -> None:
    from lmstudio_bridge import __version__

    assert run_cli("--version").stdout.strip() == f"lmstudio-bridge {__version__}"
    helped = run_cli("--help")
    assert helped.returncode == 0
    for word in ("run", "models", "mcps", "doctor", "config", "--base-url", "--mcp-config"):
        assert word in helped.stdout
