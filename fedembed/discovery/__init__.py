"""Private vocabulary discovery: the federation finds its vocabulary without anyone revealing their words.

`vocab.mode = "discovered"` runs this before training (issue 16). It is heavy-hitter discovery
in the spirit of TrieHH (Zhu et al. 2020) and its secure-aggregation successors, with
user-level differential privacy:

1. **Trie levels** (alphabet.py, domain.py). Round ℓ knows the surviving prefixes of depth d_ℓ;
   its candidates are every (prefix, next c symbols, "the word ends here or goes on") — a
   dense, public vector domain. Each client votes for the candidates its own words make
   (votes.py), weight 1/√m on each of its m distinct ones: the vote vector's L2 norm is at
   most 1 whatever the client holds, the sensitivity of the Gaussian mechanism.
2. **Refinement** — one or more rounds over the candidate words the trie produced: the same
   vote, now per whole word; a client's weight goes only to its words still in the running, so
   it is larger the narrower the candidate set.
3. **Release** (protocol.py) — every round's votes are summed under SecAgg+ with the noise
   added in shares by the clients (as training's distributed DP does) or by a trusted server;
   the server keeps what clears a threshold set from the noise std and the domain size, so
   that noise alone passes a chosen expected number of candidates.

Every round is one Gaussian mechanism of sensitivity 1 on the "user" unit; the rounds are
charged to the run's privacy ledger before training's (accounting.py), and training's noise
is derived from what the discovery left of `privacy.target_epsilon`: the run's ε covers both.
params.py resolves the scenario's `[vocab.discovery]`; simulate.py runs the protocol on a
population of word sets without Flower (tests, benchmarks); the federation's rounds are in
rounds.py (server) and client.py (the ClientApp's vote handlers).
"""
