"""Test support: the scripted LM Studio, the test MCP servers, and the ways to reach the bridge.

Imported as ``tests.support.*`` by the tests, by ``bench/`` and by scripts, with no ``sys.path``
edits: the editable install (``pip install -e '.[dev]'``) puts the repository root on
``sys.path`` (``dev-mode-dirs`` in pyproject.toml), and pytest puts its rootdir there too.

- ``fake_lmstudio``: ``FakeLMStudio``, LM Studio's HTTP API scripted by cue lines in the task
  (in a thread of this process, or as ``python -m tests.support.fake_lmstudio``).
- ``echo_server.py``, ``probe_server.py``: child MCP servers with tools that behave well, badly,
  slowly or fatally; started as processes by path (``common.ECHO_SERVER``, ``common.PROBE_SERVER``),
  or built in this process with their ``build_server``.
- ``common``: where things are, and MCP config entries that start those servers.
- ``bridge``: the bridge in this process (``bridge_client``), as a process over stdio
  (``stdio_bridge``), and its command line in this process (``run_cli``).

Nothing is imported here, so ``python -m tests.support.fake_lmstudio`` starts without the MCP SDK.
"""
