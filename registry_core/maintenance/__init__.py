"""Store maintenance: garbage collection (gc.py) and consistency checks (fsck.py), the `registry
garbage-collect` and `registry fsck` commands (commands.py), and what both walk (inventory.py).

These are admin jobs: unlike the request paths they may walk the whole store. Both are safe to run
beside a serving registry; what garbage collection accepts in that case is said in gc.py.
"""
