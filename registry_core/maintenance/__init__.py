"""Store maintenance: garbage collection (gc.py) and consistency checks (fsck.py), and what both walk
(inventory.py); the audit timeline of meta.git's history (audit.py) and the restore of a tag to an
earlier digest (restore.py), which share the walk of that history (history.py). Their commands:
`registry garbage-collect`, `registry fsck`, `registry audit`, `registry tag restore` (commands.py).

These are admin jobs: unlike the request paths they may walk the whole store. All are safe to run
beside a serving registry; what garbage collection accepts in that case is said in gc.py.
"""
