"""Who is calling: API tokens (hashed at rest) or OIDC bearer JWTs, each bound to a team."""
