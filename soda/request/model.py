"""One SODA request, parsed: what to cut (SODA §3) and how to deliver it (FITS or a picture)."""

from __future__ import annotations

from dataclasses import dataclass

from dali.params import Params
from soda.request.params import FITS, FITS_FORMATS, CutoutParams, parse_cutout
from soda.request.render import IMAGE_FORMATS, JPEG, PNG, RenderParams, RGBRequest, parse_render

FORMATS = {**FITS_FORMATS, **IMAGE_FORMATS}
EXTENSIONS = {FITS: "fits", PNG: "png", JPEG: "jpg"}


@dataclass(frozen=True)
class SodaRequest:
    cutout: CutoutParams
    render: RenderParams | None  # None for FITS

    @property
    def mime(self) -> str:
        return self.cutout.response_format

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.mime]

    @property
    def rgb(self) -> RGBRequest | None:
        if self.render is None or (self.render.rgb is None and not self.render.use_default_rgb):
            return None
        return RGBRequest(self.render.rgb)


def parse_request(pairs: Params, max_preview_size: int) -> SodaRequest:
    """Validate every parameter; raise UsageError / MultiValuedParamNotSupported."""
    cutout = parse_cutout(pairs, FORMATS)
    options = parse_render(pairs, max_preview_size) if cutout.response_format != FITS else None
    return SodaRequest(cutout, options)
