"""Ingest a configured survey: its class's file layout and band mapping, its demo images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import peewee as pw

from conf import Settings
from soda.index.ingest import IngestReport, Progress, ingest, ingest_lock
from soda.surveys.registry import load_object, survey_class

log = logging.getLogger(__name__)


def ingest_survey(db: pw.Database, settings: Settings, name: str, paths: Sequence[Path],
                  progress: Progress | None = None) -> IngestReport:
    with ingest_lock(db):
        return ingest(db, name, survey_class(settings, name), paths,
                      settings.surveys[name].band_map, progress)


def prepare_demo_surveys(db: pw.Database, settings: Settings, build: bool) -> None:
    """Surveys with a demo builder: build their images when missing (if ``build``), then
    bring the index up to date with their root (cheap when nothing changed)."""
    for name, conf in settings.surveys.items():
        if not conf.demo_builder:
            continue
        root = settings.survey_root(name)
        if build:
            log.info("checking the demo images of survey %s in %s", name, root)
            load_object(conf.demo_builder)(root)
        if root.exists():
            report = ingest_survey(db, settings, name, [root])
            if report.new or report.changed or report.removed or report.bad:
                log.info("index: %s", report.summary())
            for path, reason in report.bad:
                log.warning("index: %s: %s", path, reason)
