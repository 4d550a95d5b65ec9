"""Sweeps: many ordinary runs over a grid of config values, one table and plots at the end.

spec     the sweep file, its cells, ``run_sweep`` and the ``securefed sweep`` parser
runner   runs the cells (in parallel worker processes), resumable
table    the sweep's table (CSV, Markdown) from the cells' run folders
plots    accuracy vs epsilon / energy, federated vs baselines (matplotlib)
heterogeneity  the findings of a partition x optimizer sweep: the optimizer its rule picks
comparison  the findings of a backbone x adapter x task grid: the arms and each adapter's cost

May import: ``run`` (a cell is ``securefed simulate``), ``privacy`` (epsilon as text),
``tasks`` (the majority-class floor), ``config``, ``errors``.
Exports: ``add_sweep_parser``, ``load_spec``, ``plan_cells``, ``run_sweep``, ``slug``.
"""

from securefed.sweep.spec import add_sweep_parser, load_spec, plan_cells, run_sweep, slug

__all__ = ["add_sweep_parser", "load_spec", "plan_cells", "run_sweep", "slug"]
