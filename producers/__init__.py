"""kappa stage: producers — the traffic simulator (see README, Architecture).

``producers.run.produce`` / ``producers.run.simulate`` run it against the real
services; ``producers.simulator.Simulator`` is the simulation alone.
"""
