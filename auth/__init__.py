"""Who is asking. Issue 6 adds OIDC/SAML login, tokens and limits behind this interface."""

from auth.identity import ANONYMOUS, Identity, IdentityResolver, anonymous_resolver

__all__ = ["ANONYMOUS", "Identity", "IdentityResolver", "anonymous_resolver"]
