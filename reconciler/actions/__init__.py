"""Carrying out a plan's actions on the engines: one module per job.

`launch` builds one task (and rolls it back whole when it fails), `stop` stops and removes one, `images`
makes sure an image is on an engine once, `gc` removes what interrupted runs left, and `runner` runs
actions in the background with bounded concurrency per engine while tracking them as work in flight.
Nothing here decides what to change (the planner did), and nothing talks to an engine but through
`engine.api`.
"""
