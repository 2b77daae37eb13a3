"""The versioned metadata store: YAML documents in a bare git repository (see store.py)."""
