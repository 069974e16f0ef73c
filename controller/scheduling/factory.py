"""Chooses the admitter from settings."""

from __future__ import annotations

from controller.config import Settings
from controller.scheduling.admission import Admitter
from controller.scheduling.inventory import Inventory
from controller.scheduling.leases import LeaseAdmitter


def build_admitter(settings: Settings) -> Admitter:
    """Leases over the inventory file; with no file, the empty inventory (see inventory.py)."""
    return LeaseAdmitter(Inventory.load(settings.inventory_file), settings.lease_ttl_s)
