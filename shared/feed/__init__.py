"""Nivoda feed access: the typed query model, feed variants, the GraphQL client and its rate limiter."""
