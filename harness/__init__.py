"""Real servers and worker processes shared by the tests and the benchmarks (not shipped):
a Redis-protocol server and cluster on loopback, and one process of a refresh fleet."""
