"""The English question of the integration tests, for the client tests too (a fixture is seen only below the
conftest that defines or imports it; the cluster's fixtures are in tests/conftest.py)."""

from tests.integration.conftest import english_question

__all__ = ["english_question"]
