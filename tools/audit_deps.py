"""Dependency vulnerability audit: ``pip-audit`` over the installed environment, summarized honestly.

    python tools/audit_deps.py            # `make audit`; CI runs it and reports, without failing on it

pip-audit asks PyPI's JSON API (``--vulnerability-service pypi``; OSV is not reachable from our
machines) for the advisories of each installed version. A package it cannot look up is *skipped*,
and pip-audit still prints "No known vulnerabilities found" when every package was skipped. This
wrapper says how many packages were really audited.

Exit status: 0 audited and clean; 1 vulnerabilities found; 2 nothing could be audited (the
vulnerability service was unreachable or answered nothing); 3 pip-audit is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    exe = shutil.which("pip-audit")
    if exe is None:
        print("pip-audit is not installed; `pip install -e .[dev]`")
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        p = subprocess.run(
            [
                exe,
                "--vulnerability-service",
                "pypi",
                "--progress-spinner",
                "off",
                "--desc",
                "off",
                "--skip-editable",
                "-f",
                "json",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if not out.is_file():
            print(f"pip-audit failed (exit {p.returncode}): {p.stderr.strip()[-1000:]}")
            return 2
        deps = json.loads(out.read_text()).get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulns = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
    print(
        f"pip-audit (PyPI advisories): {len(audited)} of {len(deps)} installed packages audited, "
        f"{len(skipped)} skipped, {len(vulns)} known vulnerabilities"
    )
    for name, version, v in vulns:
        fix = ", ".join(v.get("fix_versions") or []) or "no fixed release"
        print(f"  {name} {version}: {v.get('id')} ({', '.join(v.get('aliases') or [])}) fixed in: {fix}")
    if skipped:
        reasons = {d["skip_reason"].split(":")[0] for d in skipped}
        print(f"  skipped ({len(skipped)}): {'; '.join(sorted(reasons))[:300]}")
    if vulns:
        return 1
    if not audited:
        print(
            "  NO AUDIT RESULT: the vulnerability service answered for no package (network or API); "
            "this is not a clean bill of health"
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
