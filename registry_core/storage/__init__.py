"""Blob storage: a small driver interface (driver.py), its implementations, and the store's layout."""
