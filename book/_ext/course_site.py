"""Sphinx setup for the course site (loaded through ``sphinx.local_extensions`` in ``_config.yml``).

``COURSE_BOOK_BUILD=1`` tells :func:`utils.report.glue`, inside every notebook executed for the site,
to store its numbers with myst-nb's ``glue`` for the prose instead of showing them as a table.
"""

import os


def setup(app):
    os.environ["COURSE_BOOK_BUILD"] = "1"
    return {"parallel_read_safe": True, "parallel_write_safe": True}
