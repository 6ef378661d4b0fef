"""Griffe extension for the API reference: show Sphinx roles as code.

fastmlp's docstrings name other objects with Sphinx roles
(``:class:`~fastmlp.model.MLP```). mkdocstrings renders Markdown, where a role
would show up literally, so this turns each one into a code span of the name
(the last dotted part when the role starts with ``~``).
"""

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|obj|exc|data):`(~?)([^`]+)`")


def _name(match):
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class SphinxRolesAsCode(griffe.Extension):
    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_name, obj.docstring.value)
