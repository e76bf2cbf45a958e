"""Cutouts as pictures: one cut in grey, or three cuts on one pixel grid as colour,
encoded by ``renderers`` with the provenance of the source."""

from __future__ import annotations

from dali.errors import UsageError
from renderers import render_grey, render_rgb
from renderers.fits import cutout_header
from soda import SERVICE, VERSION
from soda.engine.cutout import Cut
from soda.request.render import PNG, RenderParams


def provenance(cuts: list[Cut], options: RenderParams) -> dict[str, str]:
    first = cuts[0]
    text = {
        "dataset": ", ".join(c.image.dataset_id for c in cuts),
        "source": ", ".join(c.image.path.name for c in cuts),
        "region": first.region.dali() if first.region is not None else "whole image",
        "source-box": f"[{first.box.x0 + 1}:{first.box.x1},{first.box.y0 + 1}:{first.box.y1}]",
        "service": f"{SERVICE} {VERSION}",
    }
    if first.mosaic is not None:
        text["mosaic"] = f"{', '.join(first.mosaic.sources)} (resampled: {first.mosaic.resample[0]})"
    if len(cuts) == 3:
        text["rgb"] = ",".join(c.image.band for c in cuts) + f" (Lupton, Q={options.q:g})"
    else:
        s = options.scaling
        text["scaling"] = f"{s.stretch}, {s.limits}" + (
            f" {s.percentiles[0]:g}-{s.percentiles[1]:g}" if s.limits == "percentile" else "")
    return text


def render(cuts: list[Cut], options: RenderParams, mime: str, quality: int) -> bytes:
    """One cut (grey) or three cuts on the same pixel grid (R, G, B) as PNG or JPEG."""
    fmt = "png" if mime == PNG else "jpeg"
    first = cuts[0]
    header = cutout_header(first.planes[0].header, first.box.x0, first.box.y0)
    text = provenance(cuts, options)
    try:
        if len(cuts) == 3:
            red, green, blue = (c.planes[0].data for c in cuts)
            return render_rgb(red, green, blue, q=options.q, max_size=options.size, wcs_header=header,
                              fmt=fmt, quality=quality, text=text)
        return render_grey(first.planes[0].data, scaling=options.scaling, max_size=options.size,
                           wcs_header=header, fmt=fmt, quality=quality, text=text)
    except ValueError as exc:
        raise UsageError(f"cannot render this cutout: {exc}") from None
