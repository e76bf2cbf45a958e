"""The configured surveys, and which one a dataset ID or a position belongs to."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conf import Settings
from soda.surveys.base import ImageRef, Survey

log = logging.getLogger(__name__)


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class Datasets:
    def __init__(self, surveys: dict[str, Survey], authority: str,
                 rgb_bands: dict[str, tuple[str, ...]] | None = None) -> None:
        self.surveys = surveys
        self.authority = authority
        self.rgb_bands = rgb_bands or {}  # survey name -> default (R, G, B) bands

    @property
    def default(self) -> Survey | None:
        """The survey that serves position-only requests (the first configured)."""
        return next(iter(self.surveys.values()), None)

    def by_id(self, dataset_id: str) -> ImageRef | None:
        for survey in self.surveys.values():
            image = survey.by_id(dataset_id)
            if image is not None:
                return image
        return None


def load_datasets(settings: Settings, build_demo: bool = False) -> Datasets:
    """Instantiate every ``[surveys.*]`` entry; optionally build missing demo images first."""
    surveys: dict[str, Survey] = {}
    for name, conf in settings.surveys.items():
        root = settings.survey_root(name)
        if build_demo and conf.demo_builder and not (root / conf.index).exists():
            log.info("building the demo images of survey %s in %s", name, root)
            builder: Callable[[Path], Path] = _load(conf.demo_builder)
            builder(root)
        factory = _load(conf.factory)
        surveys[name] = factory(root=root, authority=settings.soda.ivoa_authority, index=conf.index,
                                hdus=conf.hdus, name=name)
    rgb = {name: conf.rgb_bands for name, conf in settings.surveys.items() if conf.rgb_bands}
    return Datasets(surveys, settings.soda.ivoa_authority, rgb)
