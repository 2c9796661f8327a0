"""Benchmarks: each is a command that prints numbers and writes JSON (`callcenter bench ...`)."""
