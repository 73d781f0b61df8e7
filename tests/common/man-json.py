#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""man-json.py PAGE...: the JSON examples of a manual page survive formatting.

roff treats '"' in a macro's arguments as a delimiter, so `.B {"id": 1}`
renders as `{"id": 1}` but `.B {"a": "b"}` as `{"a": b}`: the page formats
without a warning and shows broken JSON.  This renders each page as a reader
sees it (groff -man -Tutf8, without hyphenation, wide lines) and checks that
every JSON object written in the source (a '{' followed by '"') is there and
parses; "..." stands for any value.
"""
import json
import re
import subprocess
import sys

OBJECT_START = re.compile(r'\{\s*"')


def source_objects(src):
    """How many JSON objects the source writes, roff escapes for '"' and '-' undone."""
    text = '\n'.join(line for line in src.splitlines() if not line.startswith(('.\\"', "'\\\"")))
    for esc, ch in (('\\(dq', '"'), ('\\[dq]', '"'), ('\\&', ''), ('\\-', '-'), ('\\e', '\\')):
        text = text.replace(esc, ch)
    text = re.sub(r'\\f(\[[A-Z]*\]|[BIRP])', '', text)
    return len(OBJECT_START.findall(text))


def object_at(text, start):
    """The balanced {...} at start (brackets inside strings ignored), or None."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == '\\':
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in '{[':
            depth += 1
        elif c in '}]':
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def placeholders(fragment):
    """'...' (any value) outside strings becomes 0, {...} and [...] empty ones."""
    fragment = re.sub(r'([{[])\s*\.\.\.\s*([}\]])', r'\1\2', fragment)
    out, in_str, esc = [], False, False
    i = 0
    while i < len(fragment):
        c = fragment[i]
        if in_str:
            if esc:
                esc = False
            elif c == '\\':
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif fragment.startswith('...', i):
            out.append('0')
            i += 3
            continue
        out.append(c)
        i += 1
    return ''.join(out)


def check_page(page):
    with open(page) as f:
        src = f.read()
    rendered = subprocess.run(['groff', '-man', '-t', '-Tutf8', '-P-cbou', '-rHY=0', '-rLL=250n', page],
                              capture_output=True, text=True, env={'LC_ALL': 'C.UTF-8', 'PATH': '/usr/bin:/bin'},
                              check=True).stdout
    # a paragraph's line breaks (and the next line's indentation) are spaces to JSON
    flat = re.sub(r'\s*\n\s*', ' ', rendered)
    errors = []
    end = 0
    for m in OBJECT_START.finditer(flat):
        if m.start() < end:
            continue            # inside the object just checked
        fragment = object_at(flat, m.start())
        if fragment is None:
            errors.append(f'unterminated JSON: {flat[m.start():m.start() + 80]}')
            continue
        end = m.start() + len(fragment)
        try:
            json.loads(placeholders(fragment))
        except ValueError as e:
            errors.append(f'renders as invalid JSON ({e}): {fragment}')
    want, got = source_objects(src), len(OBJECT_START.findall(flat))
    if got != want:
        errors.append(f'the source writes {want} JSON objects, the rendered page shows {got}')
    return errors


def main():
    status = 0
    for page in sys.argv[1:]:
        for e in check_page(page):
            print(f'{page}: {e}')
            status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
