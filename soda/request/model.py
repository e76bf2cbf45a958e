"""One SODA request, parsed: what to cut (SODA §3) and how to deliver it (FITS or a picture)."""

from __future__ import annotations

from dataclasses import dataclass

from dali.params import Params
from soda.request.params import FITS, FITS_FORMATS, CutoutParams, ShapeLimits, parse_cutout
from soda.request.render import IMAGE_FORMATS, JPEG, PNG, RenderParams, RGBRequest, parse_render

FORMATS = {**FITS_FORMATS, **IMAGE_FORMATS}  # every accepted RESPONSEFORMAT -> canonical type
EXTENSIONS = {FITS: "fits", PNG: "png", JPEG: "jpg"}


@dataclass(frozen=True)
class SodaRequest:
    cutout: CutoutParams
    render: RenderParams | None  # None for FITS

    @property
    def mime(self) -> str:
        """The media type the answer carries: the one the client named (DALI §3.4.3)."""
        return self.cutout.response_format

    @property
    def format(self) -> str:
        """The canonical media type of the format made (``image/fits`` -> ``application/fits``)."""
        return FORMATS[self.mime]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def rgb(self) -> RGBRequest | None:
        if self.render is None or (self.render.rgb is None and not self.render.use_default_rgb):
            return None
        return RGBRequest(self.render.rgb)


def parse_request(pairs: Params, max_preview_size: int, shapes: ShapeLimits | None = None) -> SodaRequest:
    """Validate every parameter; raise UsageError / MultiValuedParamNotSupported."""
    cutout = parse_cutout(pairs, FORMATS, shapes)
    options = parse_render(pairs, max_preview_size) if FORMATS[cutout.response_format] != FITS else None
    return SodaRequest(cutout, options)
