"""What every call is made of, assembled once (`assemble.build_call`) for the LiveKit worker,
the simulator and the benchmarks. Never imports agent.sim, agent.bench or agent.dashboard."""
