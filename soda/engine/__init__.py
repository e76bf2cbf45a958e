"""The cutout engine: from an image and a region to the pixels of every configured HDU.

Reads only what a cutout needs: memory-mapped plain FITS, or only the compression
tiles of a ``.fits.fz`` that overlap the box. Knows nothing about HTTP, jobs or databases.
"""
