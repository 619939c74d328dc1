"""The lab: experiments that store every sample, replay every budget, fit and report.

Five layers, each importing only those below it (an import-linter contract keeps the order):
`reports` (terminal tables, plots and pages of stored runs) over `policy` (compute-optimal
policies and probe data learned from runs) over `analysis` (replaying stored pools into
curves, fits and costs) over `execution` (running a spec's units, here or on Ray) over
`data` (run specs, units and rows, the store).
"""
