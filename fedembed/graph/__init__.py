"""Graphs for the node2vec family: edge lists in, node ids, per-client subgraphs, biased walks.

A client holds a subgraph (its nodes and the edges touching them) and walks only what it
holds; the walks are sentences of node ids, trained by the word2vec trainer
(fedembed/train/word2vec.py). Each job has its own module: `edgelist` (reading edge and
label files), `csr` (the adjacency), `split` (client subgraphs), `walks` (node2vec walks),
`holdout` (edges held out for link prediction), `evaluate` (node classification and link
prediction), `node2vec` (walks + training, federated or central).
"""
