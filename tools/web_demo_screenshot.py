"""Write docs/img/web_demo.png: the web demo after an uploaded file, with its score plot.

    python tools/web_demo_screenshot.py [--out docs/img/web_demo.png]

The same page steps as ``tests/deploy/test_web_demo.py::test_page_uploads_a_file_plots_scores_...``
(headless Debian Chromium via selenium, nothing downloaded), against an in-process server with the
packaged model instead of the test's freshly built runtime venv, so it takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the page steps live in the test module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "web_demo.png")
    args = ap.parse_args()

    import uvicorn

    from openkws.server.app import create_app
    from openkws.settings import Settings
    from tests.cli.conftest import free_port
    from tests.deploy.conftest import speech_wav
    from tests.deploy.test_web_demo import make_driver, upload_and_plot

    work = Path(tempfile.mkdtemp(prefix="openkws-shot-"))
    port = free_port()
    settings = Settings(data_dir=work / "data", device="cpu", inference_workers=1, port=port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            print("error: the server did not start", file=sys.stderr)
            return 1
        time.sleep(0.1)
    wav = speech_wav(
        work / "okay_hey_jarvis.wav", "okay, hey jarvis, what time is it", lead_s=0.5, tail_s=0.5
    )
    driver, profile = make_driver(wav)
    try:
        upload_and_plot(driver, f"http://127.0.0.1:{port}", wav, args.out)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
