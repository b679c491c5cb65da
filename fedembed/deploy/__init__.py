"""Deployment: the same ServerApp/ClientApp under Flower's deployment runtime.

`certs` makes the TLS CA and SuperLink certificate, `node_keys` the SuperNode key pairs,
`processes` starts and stops SuperLink/SuperNodes and submits runs with `flwr run`,
`federation` wraps a local N-node federation end to end, `edge` is one device's client.
See docs/DEPLOY.md.
"""
