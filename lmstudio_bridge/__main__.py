"""``python -m lmstudio_bridge`` and the ``lmstudio-bridge`` command."""

from .cli import main

if __name__ == "__main__":
    main()
