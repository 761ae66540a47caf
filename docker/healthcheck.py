"""Container HEALTHCHECK: exit 0 when ``GET /readyz`` answers 200, else 1 (stdlib only, no curl).

The port comes from ``OPENKWS_PORT`` (default 8000); the service must listen on the container's
loopback too, which ``OPENKWS_HOST=0.0.0.0`` does.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("OPENKWS_PORT", "8000")
    url = os.environ.get("OPENKWS_HEALTHCHECK_URL", f"http://127.0.0.1:{port}/readyz")
    try:
        with urllib.request.urlopen(url, timeout=4) as r:  # noqa: S310 (fixed local URL)
            ok = r.status == 200
    except (urllib.error.URLError, OSError) as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
