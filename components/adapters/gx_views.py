"""Data Docs page views whose compiled templates last for the process (named in ``gx/great_expectations.yml``).

GX builds a new jinja ``Environment`` for every Data Docs build, so each checkpoint run compiled about fifty page
templates again: most of a build's time, and several times the validation of a 500-ID forget request. These views
are GX's own (``DefaultJinjaPageView``, ``DefaultJinjaIndexPageView``) with one process-wide jinja bytecode cache
attached: the first build of a process compiles, later builds load the compiled code. Jinja checks each template's
source checksum, so a changed template is compiled again. The pages are the same.
"""

from __future__ import annotations

from typing import Any

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class ProcessBytecodeCache(BytecodeCache):
    """Compiled templates in memory, keyed by jinja's bucket key (template name and file)."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        self._compiled.clear()


CACHE = ProcessBytecodeCache()


class CachedJinjaPageView(DefaultJinjaPageView):
    """GX's page view (validation results, expectation suites) with the process's bytecode cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = CACHE


class CachedJinjaIndexPageView(DefaultJinjaIndexPageView):
    """GX's index page view with the process's bytecode cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = CACHE
