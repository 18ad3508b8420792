"""Continuous evaluation: promptfoo-format suites run natively (`sovra eval`), remembered, and
exported as metrics."""
