"""Reproducible pipelines with content-addressed step caching.

    dag       the step graph built from input references; topological order, descendants
    refs      the ``${...}`` reference syntax: input paths and command substitution
    code      a step's code set: scripts in its command, declared extras, local imports
    digests   content digests of files and directories, behind a persisted stat cache
    cachekey  the step cache key (command, params, environment, inputs, code)
    cache     cache entries in the store: capture, look up, restore step outputs
    runner    ``run_pipeline``: schedules steps, restores cached ones, records the run
    process   a step as a subprocess: its environment, logs, timeout
    lock      one run of a pipeline at a time per workspace (flock, inherited by steps)
    environment  ``StepEnvironment``: what a step needs from a realised environment
    record    ``RunRecord`` values, saved as ``runs/<pipeline>/<run_id>.json``
    lineage   git commit / author / dirty of the workspace
    progress  terminal progress (rich live status on a TTY, plain lines otherwise)

Nothing is imported here so that ``mlops run`` pays only for what it uses.
"""
