"""
Typing help for the tests.

L{TestCaseMixin} is the base of the tests' mixins: to the type checker a
L{SynchronousTestCase} (what the mixins call, C{addCleanup}, C{fail} and
the assertions, is there), at run time nothing, so that a mixin is never
collected as a test case of its own.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase as TestCaseMixin
else:
    TestCaseMixin = object

__all__ = ["TestCaseMixin"]
