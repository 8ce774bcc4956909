#!/usr/bin/env python3
"""`make docs`: replace the README's configuration tables with `defender-alertd config-reference`
(generated from the key table the configuration loader validates against)."""
import re, subprocess, sys

binary, readme = sys.argv[1], sys.argv[2]
tables = subprocess.run([binary, "config-reference"], capture_output=True, text=True, check=True).stdout.rstrip("\n")
text = open(readme, encoding="utf-8").read()
pattern = re.compile(r"(<!-- config-reference:begin[^\n]*-->\n).*?(\n<!-- config-reference:end -->)", re.S)
if not pattern.search(text):
    sys.exit(f"{readme}: no config-reference markers")
updated = pattern.sub(lambda m: m.group(1) + tables + m.group(2), text)
if updated != text:
    open(readme, "w", encoding="utf-8").write(updated)
    print(f"{readme}: configuration reference updated")
