"""The SODA 1.0 cutout service, laid out in the order a request flows through it.

    request/   HTTP parameters -> a typed request (SODA §3 parameters, picture options)
    plan.py    the request -> a list of targets (one per position x band, SODA §6)
    surveys/   which image holds a dataset ID or a position (DES tiling, demo data)
    sky/       regions on the sky and the spherical geometry they need
    engine/    read only the pixels a region needs from every configured HDU
    output/    FITS files and pictures (through ``renderers``)
    cutouts.py the pipeline above in one object, shared by sync requests and jobs
    jobs/      the UWS job kinds that run cutouts in workers
    web/       the Starlette application: routes, access policy, accounts, DataLink, VOSI
    ops/       running it: the runtime that owns all state, CLI, health, metrics, logs

Everything down to ``cutouts.py`` imports no web, database or queue library.
"""

SERVICE = "cutout-service"
VERSION = "0.1.0"
