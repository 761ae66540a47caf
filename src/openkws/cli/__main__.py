"""``python -m openkws.cli`` (torchrun and scripts that need a module to run)."""

from openkws.cli import main

main()
