"""Turning a cut array and its WCS into bytes (FITS, PNG, JPEG). Knows nothing about HTTP."""
