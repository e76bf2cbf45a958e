"""SODA/DALI: parameters, surveys, the cutout engine, endpoints and the app factory."""
