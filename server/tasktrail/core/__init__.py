"""The core: tasks, their lifecycle and their logs, for every surface.

It imports no gRPC, SQL driver, HTTP or dialect word: the store it runs on is
the `TaskStore` of `storage`, the surfaces above it translate its errors.
"""
