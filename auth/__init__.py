"""Who is asking: identities, login mechanisms (OIDC, SAML), API tokens, rate limits.

Nothing here imports the rest of the service but ``dali`` (the clock, standard ids); ``soda.access`` puts the pieces together
into the service's policy.
"""

from auth.identity import ANONYMOUS, Identity, IdentityResolver, anonymous_resolver

__all__ = ["ANONYMOUS", "Identity", "IdentityResolver", "anonymous_resolver"]
