"""Who may do what: tokens, cloud accounts and their keys, basic-auth users,
and the gate that checks them at the start of a call.

`principal` is the leaf every other module here imports; `gate` imports only
it (the checks it runs come in from the server that builds it).
"""
