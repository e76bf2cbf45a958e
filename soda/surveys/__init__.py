"""Surveys: where the images of a dataset ID or a sky position are."""

from soda.surveys.base import ImageRef, Recognised, Survey
from soda.surveys.registry import Datasets, load_datasets
from soda.surveys.demo import build_des_demo, ensure_demo
from soda.surveys.des import DESSurvey
from soda.surveys.generic import GenericSurvey

__all__ = ["DESSurvey", "Datasets", "GenericSurvey", "ImageRef", "Recognised", "Survey",
           "build_des_demo", "ensure_demo", "load_datasets"]
