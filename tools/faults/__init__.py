"""Harnesses for trunkkey's ledgers: races, crashes, latency, growth. Run from the repo root."""
