"""``python -m tsf_adapter`` is the ``tsf-adapter`` command."""

from __future__ import annotations

from tsf_adapter.cli import main

if __name__ == "__main__":
    main()
