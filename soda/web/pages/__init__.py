"""The web interface for people, under ``/ui/``: server-rendered pages (Jinja2) with a
little plain JavaScript, beside the VO endpoints, whose answers they never change.

One module per page (``cutout``, ``bulk``, ``jobs``, ``account``, ``stats``); what they
share (who is asking, the templates, the layout) is in ``site``; ``vendor`` fetches the
optional Aladin Lite sky view from the npm registry into a git-ignored static folder.
"""

from soda.web.pages.site import Site

__all__ = ["Site"]
