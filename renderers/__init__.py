"""Turning a cut array and its WCS into bytes (FITS, PNG, JPEG). Knows nothing about HTTP."""

from renderers.image import FORMATS, WCS_KEY, Format, render_grey, render_rgb
from renderers.stretch import LIMITS, STRETCHES, Scaling

__all__ = ["FORMATS", "LIMITS", "STRETCHES", "WCS_KEY", "Format", "Scaling", "render_grey", "render_rgb"]
