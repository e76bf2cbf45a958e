"""The configured surveys, and which one a dataset ID or a position belongs to."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from conf import Settings
from soda.surveys.base import ImageRef, Survey
from soda.surveys.catalogue import ImageCatalogue

log = logging.getLogger(__name__)


def load_object(path: str) -> Any:
    """The object an import path "package.module:name" names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def survey_class(settings: Settings, name: str) -> type[Survey]:
    """The class of a configured survey: it serves the survey and recognises its files."""
    cls = load_object(settings.surveys[name].factory)
    if not (isinstance(cls, type) and issubclass(cls, Survey)):
        raise TypeError(f"survey {name}: {settings.surveys[name].factory} is not a Survey class")
    return cls


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


def load_datasets(settings: Settings, catalogue: ImageCatalogue) -> Datasets:
    """Instantiate every ``[surveys.*]`` entry over the image catalogue."""
    surveys: dict[str, Survey] = {}
    for name, conf in settings.surveys.items():
        surveys[name] = survey_class(settings, name)(
            catalogue=catalogue, authority=settings.soda.ivoa_authority, name=name,
            hdus=conf.hdus, band_ranges=conf.band_ranges, **conf.options)
    rgb = {name: conf.rgb_bands for name, conf in settings.surveys.items() if conf.rgb_bands}
    return Datasets(surveys, settings.soda.ivoa_authority, rgb)
