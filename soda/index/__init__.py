"""The image index: what `cutout ingest` found in a survey's files, in the service's database.

``scan`` reads one file (no database), ``tables`` and ``ingest`` write the index,
``catalogue`` answers the surveys' questions from it (``soda.surveys.catalogue``).
"""
