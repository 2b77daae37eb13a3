"""The Index role: accounts, authentication, tokens, access decisions, community features."""
