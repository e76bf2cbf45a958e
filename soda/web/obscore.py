"""ObsCore 1.1 rows for the images of the catalogue, and the SIA 2.0 answer that carries them.

The columns are the mandatory set of ObsCore 1.1 (§3, Table 6) with its utypes, UCDs and
units. Each row is DataLink-enabled (DataLink 1.1 §4): ``access_url`` is the row's
{links} URL and ``access_format`` the DataLink media type, and the answer ends with a
service descriptor for {links} taking ID from ``obs_publisher_did``, so a client can go
from any row to the image's links and its SODA cutout services.

What the catalogue does not know stays null (ObsCore §4: nullable columns): coadds have
no time of observation, exposure time, measured PSF or polarization (ObsCore §4.23: null
for unpolarized data). ``t_min``/``t_max``/``t_exptime``, ``facility_name`` and
``instrument_name`` come from the image's catalogue entry when it has them (MJD-OBS,
MJD-END, EXPTIME, TELESCOP, INSTRUME).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree

from dali import votable
from dali.standards import DATALINK_LINKS, DATALINK_TYPE
from soda.surveys.base import Survey
from soda.surveys.catalogue import CatalogueImage

SIA_QUERY = "ivo://ivoa.net/std/SIA#query-2.0"
# Survey coadds (DES tiles, LSST deepCoadds) are enhanced data products (ObsCore §4.4).
CALIB_LEVEL = 3

_e = votable.element

# ObsCore 1.1 §3 Table 6: name, datatype, arraysize, unit, UCD, utype, xtype.
COLUMNS: tuple[tuple[str, str, str | None, str | None, str, str, str | None], ...] = (
    ("dataproduct_type", "char", "*", None, "meta.code.class", "obscore:ObsDataset.dataProductType", None),
    ("calib_level", "int", None, None, "meta.code;obs.calib", "obscore:ObsDataset.calibLevel", None),
    ("obs_collection", "char", "*", None, "meta.id", "obscore:DataID.Collection", None),
    ("obs_id", "char", "*", None, "meta.id", "obscore:DataID.observationID", None),
    ("obs_publisher_did", "char", "*", None, "meta.ref.ivoid", "obscore:Curation.PublisherDID", None),
    ("access_url", "char", "*", None, "meta.ref.url", "obscore:Access.Reference", None),
    ("access_format", "char", "*", None, "meta.code.mime", "obscore:Access.Format", None),
    ("access_estsize", "long", None, "kbyte", "phys.size;meta.file", "obscore:Access.Size", None),
    ("target_name", "char", "*", None, "meta.id;src", "obscore:Target.Name", None),
    ("s_ra", "double", None, "deg", "pos.eq.ra", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1", None),
    ("s_dec", "double", None, "deg", "pos.eq.dec", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2", None),
    ("s_fov", "double", None, "deg", "phys.angSize;instr.fov", "obscore:Char.SpatialAxis.Coverage.Bounds.Extent.diameter", None),
    ("s_region", "double", "*", "deg", "pos.outline;obs.field", "obscore:Char.SpatialAxis.Coverage.Support.Area", "polygon"),
    ("s_resolution", "double", None, "arcsec", "pos.angResolution", "obscore:Char.SpatialAxis.Resolution.Refval.value", None),
    ("s_xel1", "long", None, None, "meta.number", "obscore:Char.SpatialAxis.numBins1", None),
    ("s_xel2", "long", None, None, "meta.number", "obscore:Char.SpatialAxis.numBins2", None),
    ("t_min", "double", None, "d", "time.start;obs.exposure", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime", None),
    ("t_max", "double", None, "d", "time.end;obs.exposure", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime", None),
    ("t_exptime", "double", None, "s", "time.duration;obs.exposure", "obscore:Char.TimeAxis.Coverage.Support.Extent", None),
    ("t_resolution", "double", None, "s", "time.resolution", "obscore:Char.TimeAxis.Resolution.Refval.value", None),
    ("t_xel", "long", None, None, "meta.number", "obscore:Char.TimeAxis.numBins", None),
    ("em_min", "double", None, "m", "em.wl;stat.min", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", None),
    ("em_max", "double", None, "m", "em.wl;stat.max", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", None),
    ("em_res_power", "double", None, None, "spect.resolution", "obscore:Char.SpectralAxis.Resolution.ResolPower.refVal", None),
    ("em_xel", "long", None, None, "meta.number", "obscore:Char.SpectralAxis.numBins", None),
    ("o_ucd", "char", "*", None, "meta.ucd", "obscore:Char.ObservableAxis.ucd", None),
    ("pol_states", "char", "*", None, "meta.code;phys.polarization", "obscore:Char.PolarizationAxis.stateList", None),
    ("pol_xel", "long", None, None, "meta.number", "obscore:Char.PolarizationAxis.numBins", None),
    ("facility_name", "char", "*", None, "meta.id;instr.tel", "obscore:Provenance.ObsConfig.Facility.name", None),
    ("instrument_name", "char", "*", None, "meta.id;instr", "obscore:Provenance.ObsConfig.Instrument.name", None),
)
NAMES = tuple(c[0] for c in COLUMNS)

Value = str | int | float | tuple[float, ...] | None


@dataclass(frozen=True)
class ObsRow:
    """One image as ObsCore describes it; ``values`` follow ``COLUMNS``."""

    values: Mapping[str, Value]

    def __getitem__(self, name: str) -> Value:
        return self.values[name]


def publisher_did(authority: str, image: CatalogueImage) -> str:
    """IVOA publisher DID of an image, as the surveys name it: ivo://<authority>/<survey>?<name>."""
    return f"ivo://{authority}/{image.survey}?{image.name}"


def _float(extra: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(extra[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def obs_row(image: CatalogueImage, survey: Survey | None, authority: str, base: str) -> ObsRow:
    did = publisher_did(authority, image)
    em: tuple[float, float] | None = None
    if survey is not None:
        try:
            em = survey.band_range(image.band)
        except (KeyError, ValueError):
            em = None
    try:
        size: int | None = max(1, math.ceil(image.path.stat().st_size / 1024))
    except OSError:
        size = None
    start, end = _float(image.extra, "MJD-OBS"), _float(image.extra, "MJD-END")
    fp = image.footprint
    return ObsRow({
        "dataproduct_type": "image",
        "calib_level": CALIB_LEVEL,
        "obs_collection": image.survey,
        "obs_id": image.name,
        "obs_publisher_did": did,
        "access_url": f"{base}/links?ID={quote(did, safe='')}",
        "access_format": DATALINK_TYPE,
        "access_estsize": size,
        "target_name": image.field,
        "s_ra": fp.centre[0],
        "s_dec": fp.centre[1],
        "s_fov": 2 * fp.radius,
        "s_region": tuple(x for vertex in fp.vertices for x in vertex),
        "s_resolution": None,
        "s_xel1": image.shape[1],
        "s_xel2": image.shape[0],
        "t_min": start,
        "t_max": end if end is not None else start,
        "t_exptime": _float(image.extra, "EXPTIME"),
        "t_resolution": None,
        "t_xel": None,
        "em_min": em[0] if em else None,
        "em_max": em[1] if em else None,
        "em_res_power": (em[0] + em[1]) / 2 / (em[1] - em[0]) if em and em[1] > em[0] else None,
        "em_xel": 1 if em else None,
        "o_ucd": None,
        "pol_states": None,
        "pol_xel": None,
        "facility_name": image.extra.get("TELESCOP") or None,
        "instrument_name": image.extra.get("INSTRUME") or None,
    })


def _text(value: Value) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return " ".join(repr(x) for x in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def answer(rows: Iterable[ObsRow], base: str, overflow: bool) -> bytes:
    """DALI §4.4 / SIA 2.0 §4: the results RESOURCE (QUERY_STATUS OK, the table, OVERFLOW
    after it when truncated), then the {links} service descriptor (DataLink 1.1 §4)."""
    root = votable.root()
    results = _e(root, "RESOURCE", type="results")
    _e(results, "INFO", name="QUERY_STATUS", value="OK")
    _e(results, "INFO", name="standardID", value=SIA_QUERY)
    table = _e(results, "TABLE")
    for name, datatype, arraysize, unit, ucd, utype, xtype in COLUMNS:
        attrs = {"name": name, "ID": name, "datatype": datatype, "ucd": ucd, "utype": utype}
        if arraysize:
            attrs["arraysize"] = arraysize
        if unit:
            attrs["unit"] = unit
        if xtype:
            attrs["xtype"] = xtype
        _e(table, "FIELD", **attrs)
    data = _e(_e(table, "DATA"), "TABLEDATA")
    for row in rows:
        tr = _e(data, "TR")
        for name in NAMES:
            _e(tr, "TD").text = _text(row[name])
    if overflow:  # DALI §4.4.1
        _e(results, "INFO", name="QUERY_STATUS", value="OVERFLOW")
    _links_descriptor(root, base)
    return votable.serialize(root)


def _links_descriptor(root: etree._Element, base: str) -> None:
    """DataLink 1.1 §4: the {links} service, ID taken from each row's obs_publisher_did."""
    resource = _e(root, "RESOURCE", type="meta", utype="adhoc:service", ID="datalink", name="datalink")
    _e(resource, "DESCRIPTION").text = "DataLink 1.1 links of each image: the file, a preview, SODA cutouts"
    _e(resource, "PARAM", name="standardID", datatype="char", arraysize="*", value=DATALINK_LINKS)
    _e(resource, "PARAM", name="accessURL", datatype="char", arraysize="*", value=f"{base}/links")
    _e(resource, "PARAM", name="contentType", datatype="char", arraysize="*", value=DATALINK_TYPE)
    group = _e(resource, "GROUP", name="inputParams")
    _e(group, "PARAM", name="ID", datatype="char", arraysize="*", ucd="meta.ref.ivoid",
       value="", ref="obs_publisher_did")
