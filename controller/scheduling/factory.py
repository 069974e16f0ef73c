"""Chooses the admitter from settings."""

from __future__ import annotations

from controller.config import Settings
from controller.scheduling.admission import Admitter, AdmitAll


def build_admitter(settings: Settings) -> Admitter:
    return AdmitAll()
