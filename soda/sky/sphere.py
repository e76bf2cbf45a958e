"""Spherical geometry on the celestial sphere (ICRS degrees in, degrees out)."""

from __future__ import annotations

import numpy as np


def separation(ra1, dec1, ra2, dec2):  # type: ignore[no-untyped-def]
    """Angular distance in degrees (Vincenty, stable at all distances)."""
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    dra = r2 - r1
    num = np.hypot(np.cos(d2) * np.sin(dra), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(dra))
    den = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den))
