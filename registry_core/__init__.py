"""A container image registry: the Index, the Registry (OCI Distribution API) and a client."""

__version__ = "0.1.0"
