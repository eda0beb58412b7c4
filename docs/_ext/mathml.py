"""Render Sphinx math as MathML at build time: no JavaScript, CDN or LaTeX.

Sphinx's default HTML math renderer, MathJax, loads a script from a CDN, so
equations stay raw LaTeX when the reader (or a headless browser in CI) is
offline; ``sphinx.ext.imgmath`` needs a LaTeX installation and ``dvipng``.
This extension converts each ``:math:`` role and ``.. math::`` block with
docutils' own LaTeX-to-MathML converter (docutils is a dependency of Sphinx)
and writes the ``<math>`` element into the page.  Every current browser
renders MathML Core natively (Chromium >= 109, Firefox, Safari).

Enable it with ``extensions = [..., "mathml"]`` and
``html_math_renderer = "mathml"``; ``_static/custom.css`` picks a font with
an OpenType MATH table.  A formula the converter does not support
is a build warning naming the formula (an error under ``-W``), never a silent
raw string.
"""

import re

from docutils import nodes
from docutils.utils.math.latex2mathml import tex2mathml
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)


# Fixes for how browsers draw docutils' output (checked in Chromium
# screenshots).  A bare apostrophe renders as a straight tick, so f' becomes
# f\prime (the prime glyph is already raised).  Fences such as \lvert, \lVert,
# \langle or \{ come out as <mo> without stretchy="false", so the browser
# stretches them to the height of the whole formula, and a "|" inside a row
# gets the spacing of an infix operator ("2 sqrt(k)  |y|").  In LaTeX only
# \left...\right stretch (docutils writes them as the first and last <mo> of
# an <mrow>) and a fence (or a slash) has no space next to an ordinary symbol.
_PRIME = re.compile(r"(?<!\\)'")
_FENCE = re.compile(
    r"<mo((?: [a-z]+=\"[^\"]*\")*)>([|\u2016\u27e8\u27e9{}\[\]()/])</mo>"
)


def _fix_fences(mathml):
    def fix(match):
        attrs, fence = match[1], match[2]
        before = mathml[: match.start()].rstrip()
        after = mathml[match.end() :].lstrip()
        if before.endswith("<mrow>") or after.startswith("</mrow>"):
            return match[0]  # \left or \right
        if "stretchy=" not in attrs and "size=" not in attrs:
            attrs += ' stretchy="false"'
        if "space=" not in attrs:
            attrs += ' lspace="0em" rspace="0em"'
        return f"<mo{attrs}>{fence}</mo>"

    return _FENCE.sub(fix, mathml)


def _to_mathml(translator, node, latex, *, block):
    try:
        mathml = tex2mathml(_PRIME.sub(r"\\prime ", latex), as_block=block)
    except Exception as exc:  # docutils raises SyntaxError and others
        logger.warning(
            "mathml: cannot convert %r: %s", latex, exc, location=node, type="mathml"
        )
        return f"<code>{translator.encode(latex)}</code>"
    return _fix_fences(mathml)


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_to_mathml(self, node, node.astext(), block=False))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    # Like sphinx.ext.mathjax: blank-line separated parts are stacked equations,
    # and a part containing ``\\`` is one multi-line (split) equation.
    parts = [part.strip() for part in node.astext().split("\n\n") if part.strip()]
    if len(parts) > 1 or (parts and r"\\" in parts[0]):
        rows = r" \\ ".join(parts)
        latex = r"\begin{aligned}" + rows + r"\end{aligned}"
    else:
        latex = parts[0] if parts else ""
    self.body.append(_to_mathml(self, node, latex, block=True))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer(
        "mathml",
        inline_renderers=(visit_math, None),
        block_renderers=(visit_displaymath, None),
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
