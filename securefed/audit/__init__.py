"""The audit: the document a compliance officer signs off, built from a run folder alone.

source       read a run folder once (files + their sha256)
report       the record: sections, flags, schema version           -> audit.json
verify       recompute every hash and epsilon, list mismatches
bound        the audit bound to its run: verify_run / verify_audit rebuild it from the records
empirical    the one-run lower bound and the one-shot estimate of epsilon from canary scores
empirical_report  audit.json's ``empirical`` section from canaries.json: flags, verification
plots        matplotlib figures (PNG) from the record
markdown     Markdown view                                          -> audit.md
html         self-contained HTML view                               -> audit.html
command      `securefed audit RUN_DIR [--out DIR] [--verify]`, write_audit

May import: ``run.folder`` (the run folder's layout), ``secagg`` (stage names),
``privacy.accounting`` (to recompute epsilon), ``privacy.canaries`` (numpy: the canaries'
coins and scores), numpy, scipy, matplotlib, ``errors`` -- never torch, except that
``--verify`` of a run with input canaries imports ``run.canaries`` to recompute their losses.
Exports: ``build_audit``, ``write_audit``, ``verify_run``, ``verify_audit``, ``Verification``,
``add_audit_parser``, ``SCHEMA_VERSION``.
"""

from securefed.audit.bound import verify_audit, verify_run
from securefed.audit.command import add_audit_parser, write_audit
from securefed.audit.report import SCHEMA_VERSION, build_audit
from securefed.audit.verify import Verification

__all__ = [
    "SCHEMA_VERSION",
    "Verification",
    "add_audit_parser",
    "build_audit",
    "verify_audit",
    "verify_run",
    "write_audit",
]
