"""Benchmarks, a side room that only the command line imports: one module per benchmark
(:mod:`~sensitivity.bench.optimizer_step`, :mod:`~sensitivity.bench.sweep_overhead`, :mod:`~sensitivity.bench.population`,
:mod:`~sensitivity.bench.gpu_packing`, :mod:`~sensitivity.bench.training_throughput`,
:mod:`~sensitivity.bench.task_times`), the bare training loop a sweep is compared with as a program
of its own (:mod:`~sensitivity.bench.bare_loop`), one timing helper (:mod:`~sensitivity.bench.timing`)
and the printout's shared header of versions and device (:mod:`~sensitivity.bench.printout`)."""
