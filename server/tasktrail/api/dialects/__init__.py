"""The REST dialects: thin gRPC servicers that show core tasks in an existing
API's shape, which Envoy transcodes from their HTTP bindings.

`controlplane` (the pgEdge Control Plane task API), `cloud` (the Redis Cloud
task API) and `crdb` (the Redis Enterprise `/v1/crdb_tasks` API) are
independent of each other; `goa` (the error answers of pgEdge's framework),
`tails` (live tails as NDJSON and SSE) and `rendering` are what they share.
"""
