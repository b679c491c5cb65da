"""SecAgg+ (Bell et al. 2020) for fedembed's embedding updates, on Flower's Message API.

The server learns only the sum of the surviving clients' quantized updates (tables and
per-row weights, one vector), never one client's. Pieces, one job each:

- `quantize`: clip, stochastic rounding to integers, the ring Z_{2^32} or Z_{2^64} chosen so
  the sum of the round's clients cannot wrap; decode of the sum.
- `prg`: masks expanded by AES-256-CTR keyed with the full 256-bit secret (not Flower's
  MT19937-from-32-bits, see its docstring).
- `shamir`: t-of-n sharing of 32-byte secrets over the prime field GF(2^521 − 1).
- `keys`: X25519 key agreement, HKDF-SHA256, AES-GCM for the shares in transit.
- `graph`: the sparse (Harary) neighbour graph: each client shares with k neighbours.
- `params`: the round's protocol parameters, resolved and checked from `[secagg]`.
- `messages`: what each stage's messages carry.
- `client`, `server`: the two sides of the three-stage protocol (share keys, train + mask,
  unmask); `fedembed.federation.secure_round` drives it over Flower's Grid, by default with
  the next round's share stage riding this round's unmask exchange (`secagg.share_ahead`);
  `fedembed.federation.secure_client` holds the ClientApp's four handlers.
- `stages`: the client's last update stages (flatten, range clip, quantize, mask), which the
  composition root (fedembed/compose.py) puts at the end of the update pipeline.

With user-level DP on, clients add the noise in shares before masking
(fedembed/privacy/distributed.py). Threat model: an honest-but-curious server and clients
that follow the protocol (Bell et al.'s semi-honest setting); masked vectors are not
authenticated against a server that lies about dropouts beyond what the threshold check
(t > half of each client's holders, one unmask answer per round) already prevents.
"""
