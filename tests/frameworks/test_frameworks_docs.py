"""The samples of the docs pages that use LangChain, LiteLLM, the Agents SDK or instructor run.

tests/test_docs.py runs every other page's samples; a page that opens with
``<!-- samples need the frameworks extra ... -->`` is run here instead, where
the libraries are installed, the same way (one script, a fresh process, the
fake OpenAI server), and with conftest.py's refusing proxy in its environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import test_docs
from _support import require

if TYPE_CHECKING:
    from pathlib import Path

for module in ("langchain_openai", "litellm", "agents", "instructor"):
    require(module)


def test_framework_pages_exist() -> None:
    """The frameworks page is found, so the test below runs it."""
    assert "frameworks.md" in {page.name for page in test_docs.FRAMEWORK_PAGES}


@pytest.mark.slow
@pytest.mark.parametrize("page", test_docs.FRAMEWORK_PAGES, ids=test_docs.page_id)
def test_framework_page_samples_run(
    page: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every ```python block of the page runs, in order, as one script, without error."""
    test_docs.test_page_samples_run(page, tmp_path, request)
