"""Owner process for the embedded-server tests.

Usage: ``python embedded_owner.py DATA_DIR``. Starts the embedded servers, prints
their URLs as one JSON line, then runs until its stdin is closed (a clean stop)
or it gets SIGINT (like a terminal's Ctrl-C), and stops the servers on the way out.
"""

import contextlib
import json
import sys
from pathlib import Path

from qrloop.embedded import EmbeddedServers


def main() -> None:
    """Own the servers of the data folder given on the command line."""
    with EmbeddedServers(Path(sys.argv[1])) as urls:
        print(json.dumps({"database_url": urls.database_url, "redis_url": urls.redis_url}))
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the block, stop
            sys.stdin.read()


if __name__ == "__main__":
    main()
