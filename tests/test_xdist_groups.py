"""The test processes' groups reach pytest-xdist's scheduler (tests/conftest.py): under
``--dist loadgroup`` a grouped test's id ends in ``@group``, which is how the scheduler keeps a
group in one process."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("group-check")
def test_a_grouped_test_carries_its_group_in_its_id_under_loadgroup(request):
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not run under pytest-xdist with --dist loadgroup (make test and make quick pass it)")
    assert request.node.nodeid.endswith("::test_a_grouped_test_carries_its_group_in_its_id_under_loadgroup@group-check")
