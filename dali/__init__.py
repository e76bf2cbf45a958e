"""Protocol-common code of the IVOA DAL standards (DALI 1.1), shared by every endpoint.

- ``dali.errors``: the error family, one class per DALI/SODA label, with HTTP status.
- ``dali.params``: request parameters as case-insensitive pairs (DALI §3.1-3.2).
- ``dali.timestamps``: UTC times and their ISO 8601 text (DALI §3.3.3).
- ``dali.votable``: VOTable error documents (DALI §4.4).
- ``dali.standards``: the IVOA standard identifiers the service declares.
- ``dali.http``: reading parameters from a Starlette request, error responses, URLs.

Only ``dali.http`` imports Starlette; everything else imports lxml at most, so the
cutout engine can use the error family without the web stack.
"""
