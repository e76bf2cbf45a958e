"""An image catalogue held in memory: a list, searched in full.

For a handful of images where no database is at hand (tools, and the engine-path check
that runs without any database library); the service itself uses the index
(``soda/index/``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from soda.sky.footprint import distance, holds, holds_many, meets_circle
from soda.surveys.catalogue import CatalogueImage


class InMemoryCatalogue:
    def __init__(self, images: Iterable[CatalogueImage] = ()) -> None:
        self.images = list(images)

    def _of(self, survey: str) -> list[CatalogueImage]:
        return [image for image in self.images if image.survey == survey]

    def get(self, survey: str, name: str) -> CatalogueImage | None:
        return next((image for image in self._of(survey) if image.name == name), None)

    def at(self, survey: str, ra: float, dec: float) -> list[CatalogueImage]:
        found = [i for i in self._of(survey)
                 if holds(i.footprint.vertices, i.footprint.centre, i.footprint.radius, ra, dec)]
        return sorted(found, key=lambda i: distance(i.footprint.centre, (ra, dec)))

    def holding(self, survey: str, ra: np.ndarray, dec: np.ndarray) -> list[tuple[CatalogueImage, np.ndarray]]:
        found = []
        for i in sorted(self._of(survey), key=lambda i: i.name):
            rows = np.flatnonzero(holds_many(i.footprint.vertices, i.footprint.centre, i.footprint.radius, ra, dec))
            if rows.size:
                found.append((i, rows))
        return found

    def overlapping(self, survey: str, ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        return self.search([survey], ra, dec, radius, len(self.images))

    def in_field(self, survey: str, field: str) -> list[CatalogueImage]:
        return [image for image in self._of(survey) if image.field == field]

    def bands(self, survey: str) -> Mapping[str, int]:
        return dict(Counter(image.band for image in self._of(survey)))

    def version(self, survey: str) -> str:
        """The survey's images themselves, hashed (the list may be changed in place)."""
        return str(hash(tuple((i.name, i.field, i.band, str(i.path), i.footprint) for i in self._of(survey))))

    def first(self, survey: str) -> CatalogueImage | None:
        return min(self._of(survey), key=lambda i: i.name, default=None)

    def search(self, surveys: Sequence[str], ra: float, dec: float, radius: float,
               limit: int) -> list[CatalogueImage]:
        found = [i for i in self.images if i.survey in surveys
                 and meets_circle(i.footprint.vertices, i.footprint.centre, i.footprint.radius, ra, dec, radius)]
        return sorted(found, key=lambda i: distance(i.footprint.centre, (ra, dec)))[:limit]
