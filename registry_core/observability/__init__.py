"""What an operator watches: liveness and readiness probes, Prometheus metrics, request ids and
the JSON access log.

- health.py: the readiness checks behind /readyz (store writable, meta.git readable, the storage
  driver answering); no bottle.
- metrics.py: the Prometheus metrics of a worker, summed across gunicorn's workers through
  prometheus-client's multiprocess mode, and the gauges read from the store when scraped.
- multiproc.py: the gunicorn master's part (a private folder for the workers' metric files,
  removed on exit; a dead worker's live gauges dropped); imports nothing else of the registry.
- middleware.py: the WSGI middleware around the whole app: every response's X-Request-Id, the
  per-request counters, the access log line.
- routes.py: /healthz, /readyz, /metrics (and who may read /metrics).
"""
