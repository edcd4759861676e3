"""Running a stage's jobs beyond local processes: Kaldi-style ``--cmd`` runners (see README, "Running on a
cluster").

- :mod:`~subtools.parallel.convention`: the runner convention ``CMD [opts] JOB=a:b LOG command...``.
- :mod:`~subtools.parallel.run`: the shipped local runner (``--cmd local``, or ``run.pl`` without Kaldi).
- :mod:`~subtools.parallel.slurm`: the built-in SLURM runner (``--cmd "slurm --partition cpu --mem 4G"``).
- :mod:`~subtools.parallel.dispatch`: what a stage does with ``--cmd`` (used by
  :func:`subtools.kaldi.ark_jobs.run_jobs`).
- :mod:`~subtools.parallel.local_slurm`: a private single-node SLURM on this machine (tests, bench).
"""
