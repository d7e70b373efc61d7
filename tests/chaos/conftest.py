"""The fault suite shares the integration suite's fixtures and hooks (the
stack factory, the check that no process died unnoticed, the logs of every
process in a failing test's report): they are loaded from
tests/integration/conftest.py under a name of their own, so that this file,
itself a module named conftest, does not shadow them."""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", os.path.join(HERE, "..", "integration", "conftest.py"))
integration_conftest = importlib.util.module_from_spec(_spec)
sys.modules["integration_conftest"] = integration_conftest
_spec.loader.exec_module(integration_conftest)

from integration_conftest import (  # noqa: E402,F401
    _processes_still_up, pytest_runtest_makereport, started_stack)
