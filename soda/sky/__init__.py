"""Regions on the sky (SODA §3.3) and the spherical geometry they need.

    regions.py   CIRCLE, RANGE and POLYGON as parsed, and a position that represents each
    sphere.py    the geometry of the sphere: directions, separations, the tangent plane,
                 points along great circles and circles
    polygons.py  whether POLYGON vertices make a usable region, and which way they run
"""
