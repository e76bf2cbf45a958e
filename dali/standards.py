"""IVOA standard identifiers (IVOA Identifiers 2.0) the service declares, in one place."""

VOSI_CAPABILITIES = "ivo://ivoa.net/std/VOSI#capabilities"
VOSI_AVAILABILITY = "ivo://ivoa.net/std/VOSI#availability"
SODA_SYNC = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_ASYNC = "ivo://ivoa.net/std/SODA#async-1.0"
DATALINK_LINKS = "ivo://ivoa.net/std/DataLink#links-1.1"
UWS_REST = "ivo://ivoa.net/std/UWS#rest-1.1"
SSO_OPENID = "ivo://ivoa.net/sso#OpenID"
SSO_SAML2 = "ivo://ivoa.net/sso#saml2.0"

DATALINK_TYPE = "application/x-votable+xml;content=datalink"
