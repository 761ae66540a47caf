"""Text front-end shared by training and serving: phoneme inventory and offline G2P."""

from openkws.text.g2p import G2P, G2PError, Pronunciation
from openkws.text.phonemes import PhonemeInventory, load_inventory

__all__ = ["G2P", "G2PError", "PhonemeInventory", "Pronunciation", "load_inventory"]
