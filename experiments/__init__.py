"""How research is run: the ``shopgym`` command line, configs, runners, reports and benchmarks."""
