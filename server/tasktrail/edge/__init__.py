"""The edge and its keeper: Envoy's configuration (`config`), TLS for the
HTTPS ports (`tls`), sample data for a new store (`sample`), and `tasktrail
up`, which starts and supervises the server processes and Envoy (`supervisor`).
"""
