"""Attacks on the federation: privacy attacks (privacy/) and adversarial clients (adversaries/)."""
