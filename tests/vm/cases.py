# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM suite's cases: host-side orchestration of each.  A case's guest
side is cases/<script>.sh; see vmlib for the Context it receives."""

CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


@case
def boot(ctx):
    """The guest boots, loads its modules and runs its tools (no device)."""
    ctx.vm("boot", "boot.sh", timeout=120).run()
