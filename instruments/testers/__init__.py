"""Pulse/read testers: the :class:`~instruments.testers.base.Tester` contract and one module per
tester, each turning a device visit into its instrument's command sequence."""
