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
- `guard`: what a client refuses from the server (a low threshold, no or too few peers, a
  second mask request): its own check of the parameters it is sent.
- `commit`: the hash of each client's self-mask seed, sent at the share stage and checked
  against the seed the server rebuilds.
- `tally`: the round's metric sums (loss·examples, examples, clip count) as exact integers
  inside the masked vector, so no metric travels in the clear.
- `messages`: what each stage's messages carry.
- `client`, `server`: the two sides of the three-stage protocol (share keys, train + mask,
  unmask); `fedembed.federation.secure_round` drives it over Flower's Grid, by default with
  the next round's share stage riding this round's unmask exchange (`secagg.share_ahead`);
  `fedembed.federation.secure_client` holds the ClientApp's four handlers.
- `stages`: the client's last update stages (flatten, range clip, quantize, mask), which the
  composition root (fedembed/compose.py) puts at the end of the update pipeline.

With user-level DP on, clients add the noise in shares before masking
(fedembed/privacy/distributed.py).

Threat model. Clients follow the protocol (Bell et al.'s semi-honest clients). The server is
honest-but-curious, and a client does not take its word for the protocol's parameters: it
checks what it is sent (`guard`) so that a server that lies about the threshold, the peers or
who dropped out cannot unmask one client — 2t > holders + 1 at the share stage (below it, the
split-view attack: tell half the holders a client survived and the other half it dropped, and
rebuild both of its secrets), at least one peer and t − 1 of them, all among its holders, one
mask request and one unmask answer per round, never both secrets of one peer, nothing when
fewer than t peers survived. What a client sends is the masked vector and the protocol's keys
and shares, nothing else: its round metrics are summed under the masks (`tally`), its
record-level accountant stays on its node. A corrupted share cannot silently change the sum:
a rebuilt seed that does not open its commitment (`commit`) aborts the round, naming the client;
a rebuilt mask key is checked against its public key. Not covered: a server that substitutes
the peers' public keys (the keys are not signed: no PKI), Sybil clients the server controls
(they hold shares of their neighbours), and clients that deviate (a client can send any vector
in range; robust rules need the plain path).
"""
