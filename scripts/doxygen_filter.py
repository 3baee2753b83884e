#!/usr/bin/env python3
"""Doxygen INPUT_FILTER (docs/Doxyfile): a header's `//` comments as Doxygen ones, line for line.
Opening block (before `#pragma once`) -> `/// ... \\file`; a block right above a declaration at
class/namespace scope -> `///`; `x;  // text` (and aligned continuation lines) -> `x;  ///< text`.
The first sentence is marked `\\brief`...`\\details` (JAVADOC_AUTOBRIEF cuts at `<a>.<b>` too).
Outside `code` and "quotes" (printed as they are), \\ < > # % @ $ & ::x -- are escaped.
Indented runs (`//   x = y`: code, tables, lists) become <pre> blocks."""
import itertools, re, sys

SPECIAL = re.compile(r"([\\<>#%@$&]|(?<![\w:])::(?=\w)|(?<!-)---?(?!-))")
BRIEF_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.(?=\s|$)|\n\s*\n")  # or a blank line
NOT_DECL = re.compile(r"\s*($|#(?!define)|}|namespace\b|(public|private|protected):|static_assert)")
CODE_COMMENT = re.compile(r"""((?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[^"'/]|/(?!/))*)//(.*)""")
COMMENT = re.compile(r"\s*//(?![/!])")  # a full-line `//` comment (`///`, `//!` are Doxygen's)
SCOPE = re.compile(r'\b(namespace|class|struct|union|enum)\b|extern\s*"C"')

def escape(text, spans, brief):
    """Escapes `text` outside `spans`; brief: [open], closed with \\details at a sentence end."""
    parts = re.split(spans, text)
    for k in range(0, len(parts), 2):  # odd parts: the spans
        parts[k] = SPECIAL.sub(r"\\\1", parts[k])
        m = brief[0] and BRIEF_END.search(parts[k])
        if m:
            brief[0], d = False, " \\details" * (m.group()[0] == ".")
            parts[k] = parts[k][: m.end()] + d + parts[k][m.end() :]
    return "".join(parts)

def block(items, marker):
    """(code, comment text) pairs -> the lines with Doxygen comments."""
    texts, brief, out = [t for _, t in items], [not items[0][1].startswith("  ")], []
    for pre, run in itertools.groupby(texts, lambda t: t.startswith("  ")):  # indented runs
        text = "\n".join(run)
        if pre:  # no `code` spans in <pre>
            text = re.sub(r"(?m)^(\s*)-(?=[\s#])", r"\1\\-", escape(text[1:], r'("[^"]*")', [0]))
            text = " \\details" * brief[0] + " <pre>" + text  # (a - item would start a list)
            text, brief[0] = text + "</pre>", False
        else:
            text = escape(text, r'(`[^`]*`|"[^"]*")', brief)
        out += text.split("\n")
    out[0] = " \\brief" * (not items[0][1].startswith("  ")) + out[0]
    out[-1] = re.sub(r" \\details$", "", out[-1])  # nothing after the brief
    return [lead + marker + t for (lead, _), t in zip(items, out)]

lines = open(sys.argv[1], encoding="utf-8").read().split("\n")  # the header Doxygen names
out, stack, stmt = list(lines), [], ""  # stack: kinds of the open braces
head = next((i for i, l in enumerate(lines) if l.startswith("#pragma once")), 0)
if head and all(COMMENT.match(l) for l in lines[:head]):  # the file's opening block
    out[:head] = block([l.split("//", 1) for l in lines[:head]], "///")
    out[head - 1] += " \\file"
i = head
while i < len(lines):
    line, in_body = lines[i], "body" in stack
    if COMMENT.match(line):  # a full-line comment block: lines i..j-1
        j = next((k for k, l in enumerate(lines[i:], i) if not COMMENT.match(l)), len(lines))
        if not in_body and not NOT_DECL.match("".join(lines[j : j + 1])):
            out[i:j] = block([l.split("//", 1) for l in lines[i:j]], "///")
        i = j
        continue
    pp = line.lstrip().startswith("#") or lines[i - 1].endswith("\\")  # preprocessor
    m = None if pp else CODE_COMMENT.match(line)
    code = m.group(1) if m else line
    for c in "" if pp else code:  # brace tracking: in a scope (namespace, class, enum)?
        if c == "{":  # `template <class T> void f() {` opens a body
            k = SCOPE.search(stmt)
            stack.append((k.group(1) or "extern") if k and "(" not in stmt else "body")
        elif c == "}":
            stack[-1:] = []
        stmt = "" if c in ";{}" else stmt + c
    stmt, c, j = stmt + " ", code.rstrip(), i + 1
    if m:  # a trailing comment, continued by the comment lines aligned under it
        j = next((k for k, l in enumerate(lines[j:], j)
                  if not COMMENT.match(l) or l.index("//") != len(code)), len(lines))
        if c.strip() not in ("", "}", "};") and not in_body and (
                c[-1] == ";" or (c[-1] == "}" and "{" in c) or stack[-1:] == ["enum"]):
            items = [(code, m.group(2))] + [l.split("//", 1) for l in lines[i + 1 : j]]
            out[i:j] = block(items, "///<")
    i = j
sys.stdout.write("\n".join(out))
