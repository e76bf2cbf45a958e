"""Coverage maps: the sky a survey's images cover, as an IVOA MOC (MOC 2.0) built with mocpy.

The MOC of a set of footprints is the union of the HEALPix cells, down to ``max_order``,
that meet any footprint: it covers every point of every image, and a little more at the
edges. So a position outside it is outside every image (``outside``), which answers
"not in this survey" without asking the index; a position inside it may still fall in a
gap narrower than a cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from io import BytesIO

import astropy.units as u
import numpy as np
from mocpy import MOC

Vertex = tuple[float, float]  # (ra, dec) in degrees


def footprint_moc(footprints: Iterable[Sequence[Vertex]], max_order: int) -> MOC:
    """The union of the cells meeting any footprint polygon (vertices in order round the edge)."""
    polygons = [fp for fp in footprints if len(fp) >= 3]
    if not polygons:
        return MOC.new_empty(max_order)
    flat: list[list[float]] = []
    for vertices in polygons:
        flat += [[float(ra) % 360.0 for ra, _ in vertices], [float(dec) for _, dec in vertices]]
    mocs = MOC.from_polygons(flat, max_depth=max_order, n_threads=1)
    union = mocs[0]
    if len(mocs) > 1:
        union = union.union(*mocs[1:])
    return union


def outside(survey_moc: MOC, ra: float, dec: float) -> bool:
    """Whether a position lies outside every image the MOC was made from (never true for
    a position inside one)."""
    inside = survey_moc.contains_lonlat(np.atleast_1d(ra) * u.deg, np.atleast_1d(dec) * u.deg)
    return not bool(inside[0])


# A cone wider than this is not tested against a coverage map (its MOC at a fine order
# costs more than the index lookup it would spare).
MAX_CONE_DEGREES = 10.0


def misses(survey_moc: MOC, ra: float, dec: float, radius: float) -> bool:
    """Whether the circle (degrees) lies wholly outside every image the MOC was made from
    (never true for a circle meeting one); False for circles wider than MAX_CONE_DEGREES."""
    if survey_moc.empty():
        return True
    if radius > MAX_CONE_DEGREES:
        return False
    cone = MOC.from_cone(lon=ra * u.deg, lat=dec * u.deg, radius=max(radius, 1e-9) * u.deg,
                         max_depth=survey_moc.max_order)
    return bool(survey_moc.intersection(cone).empty())


def moc_fits(moc: MOC) -> bytes:
    """MOC 2.0 §4.3: the FITS serialisation, a binary table of NUNIQ cells (the ordering
    MOC 1.x readers know too; MOCORDER beside MOCORD_S for them)."""
    out = BytesIO()
    moc.serialize(format="fits", v1_compatible=True).writeto(out)
    return out.getvalue()


def moc_json(moc: MOC) -> bytes:
    """MOC 2.0 §4.2.2: the JSON serialisation, {"order": [cells...]}."""
    return json.dumps(moc.serialize(format="json"), separators=(",", ":")).encode()
