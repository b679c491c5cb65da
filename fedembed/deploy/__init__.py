"""Deployment: the same ServerApp/ClientApp under Flower's deployment runtime.

`certs` makes the TLS CA and SuperLink certificate, `node_keys` the SuperNode key pairs,
`processes` starts and stops SuperLink/SuperNodes and submits runs with `flwr run`,
`federation` wraps a local N-node federation end to end, `node_runtime` is fedembed's
in-process SuperNode, `front` the only network door of a SuperLink kept on loopback (it
forwards the Fleet API and nothing else), `policy` a device's own privacy policy around its
ClientApp, `commands` the CLI (`fedembed client` is one device's node; the device's data side
is fedembed/data/device.py).
See docs/DEPLOY.md.
"""
