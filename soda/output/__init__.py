"""Cuts into bytes: multi-extension FITS files (``fits``) and PNG/JPEG pictures (``pictures``)."""
