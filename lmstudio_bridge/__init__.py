"""lmstudio-bridge: an MCP server that delegates whole tasks to local models served by LM Studio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmstudio-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
