"""The audit: the document a compliance officer signs off, built from a run folder alone.

source       read a run folder once (files + their sha256), each record checked (run.contract)
report       the record: sections, flags, schema version           -> audit.json
verify       recompute every hash and epsilon, list mismatches
verification the record verify fills: checks counted, each mismatch (epsilons, institution too)
bound        the audit bound to its run: verify_run / verify_audit rebuild it from the records
empirical    the one-run lower bound and the one-shot estimate of epsilon from canary scores
empirical_report  audit.json's ``empirical`` section from canaries.json: flags, verification
plots        matplotlib figures (PNG) from the record
markdown     Markdown view                                          -> audit.md
html         self-contained HTML view                               -> audit.html
command      `securefed audit RUN_DIR [--out DIR] [--verify]`, write_audit

May import: ``run.folder`` (the run folder's layout), ``run.contract`` (its records read and
checked), ``run.records`` (the records' shapes) and ``config`` (the run's config through
``validate()``), ``run.seal`` and ``run.lock`` (the seal binding the audit to its run, the
folder's one-writer lock),
``run.intervals`` (the Wilson interval), ``secagg`` (stage names), ``privacy.accounting`` (to
recompute epsilon), ``privacy.distributed`` (the same for institution-level DP),
``privacy.canaries``, ``privacy.canary_scores`` and ``privacy.canary_trace`` (numpy: the
canaries' coins, scores and the carriers' trace), ``privacy.display`` (epsilon as text),
``tasks.partition`` (the majority-class floor of partition.json), numpy, scipy, matplotlib,
``errors`` -- never torch, except that ``--verify`` of a run with input canaries imports
``run.canaries`` to recompute their losses.
Exports: ``build_audit``, ``write_audit``, ``verify_run``, ``verify_audit``, ``Verification``,
``add_audit_parser``, ``SCHEMA_VERSION``.
"""

from securefed.audit.bound import verify_audit, verify_run
from securefed.audit.command import add_audit_parser, write_audit
from securefed.audit.report import SCHEMA_VERSION, build_audit
from securefed.audit.verification import Verification

__all__ = [
    "SCHEMA_VERSION",
    "Verification",
    "add_audit_parser",
    "build_audit",
    "verify_audit",
    "verify_run",
    "write_audit",
]
