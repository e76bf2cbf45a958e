"""Regions on the sky (SODA §3.3) and the spherical geometry they need."""
