"""Harnesses for trunkkey's ledgers: races, crashes, growth. Run from the repo root."""
