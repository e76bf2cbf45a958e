"""The Starlette application: routes, access policy, accounts, DataLink and VOSI."""
