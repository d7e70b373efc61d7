"""Unit tests of app/server.py: its answers, failure spreading and metrics."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "app"))
import server  # noqa: E402


class DemoTest(unittest.TestCase):
    def test_no_failures_at_rate_zero(self):
        demo = server.Demo("v1", "stable", 0.0)
        self.assertEqual({demo.answer_root() for _ in range(100)}, {200})

    def test_a_quarter_fails_at_rate_one_quarter(self):
        demo = server.Demo("v1", "canary", 0.25)
        codes = [demo.answer_root() for _ in range(100)]
        self.assertEqual(codes.count(500), 25)

    def test_metrics_count_requests_by_code_with_version_and_track(self):
        demo = server.Demo("v1", "canary", 0.5)
        for _ in range(4):
            demo.answer_root()
        text = demo.metrics()
        self.assertIn('demo_requests_total{code="200",track="canary",version="v1"} 2', text)
        self.assertIn('demo_requests_total{code="500",track="canary",version="v1"} 2', text)
        self.assertIn('demo_build_info{track="canary",version="v1"} 1', text)

    def test_rates_outside_zero_to_one_are_refused(self):
        for text in ("1.5", "-0.1", "often"):
            with self.assertRaises(ValueError):
                server.parse_rate(text, "fail-rate")


if __name__ == "__main__":
    unittest.main()
